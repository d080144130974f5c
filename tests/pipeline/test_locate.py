"""Tests of pipeline.locate (the image head's hot spot) and its use by the Inspector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from config.pipeline import PipelineConfig
from models.build import ModelSpec, build_model
from models.checkpoint import Checkpoint, make_meta
from models.operating_point import OperatingPoint
from pipeline import Inspector
from pipeline.locate import has_head_cells, head_cells, hot_spot
from pipeline.types import InputImage, Verdict
from tests.models.tester import OracleModel


def test_hot_spot_is_the_strongest_cell_and_its_hot_neighbours_in_frame_pixels() -> None:
    """Cells of 32 px on a frame padded evenly to 64 x 96 (from 50 x 90: 7 px on top, 3 on
    the left): the strongest cell (class 1) and the cells of its class at the threshold that
    touch it (diagonals too) make the box; a hot cell apart from them and other classes do
    not; the box is clipped to the frame."""
    cells = np.full((2, 2, 3), -5.0, np.float32)
    cells[1, 0, 1] = 4.0   # the strongest
    cells[1, 1, 2] = 1.0   # touches it diagonally, at the threshold
    cells[0, 1, 0] = 3.0   # another class: not part of the box
    box, k, logit = hot_spot(cells, 1.0, 50, 90)
    assert (k, logit) == (1, 4.0)
    # padded rows 0..64 -> frame -7..57 clipped to 0..50; columns 32..96 -> 29..93 -> 29..90
    assert box == (29, 0, 61, 50)
    apart = np.full((1, 2, 3), -5.0, np.float32)
    apart[0, 0, 0], apart[0, 1, 2] = 4.0, 2.0  # not touching: only the strongest cell
    assert hot_spot(apart, 1.0, 64, 96)[0] == (0, 0, 32, 32)


def test_hot_spot_below_the_threshold_is_still_the_strongest_cell() -> None:
    """With flips the head's score is a mean of three passes, so the plain pass may stay
    under the threshold: the strongest cell is the location then, never nothing."""
    cells = np.full((1, 3, 3), -2.0, np.float32)
    cells[0, 2, 2] = -1.0
    assert hot_spot(cells, 5.0, 96, 96) == ((64, 64, 32, 32), 0, -1.0)


def test_hot_spot_refuses_cells_of_the_wrong_shape() -> None:
    """Not (classes, h, w), or empty: a ValueError naming the shape."""
    with pytest.raises(ValueError, match=r"\(classes, h, w\).*\(4, 4\)"):
        hot_spot(np.zeros((4, 4), np.float32), 0.0, 64, 64)
    with pytest.raises(ValueError, match=r"not empty"):
        hot_spot(np.zeros((1, 0, 2), np.float32), 0.0, 64, 64)


def _lite0_with_head() -> tuple[ModelSpec, torch.nn.Module]:
    spec = ModelSpec.model_validate({
        "architecture": "unet", "encoder": "tu-efficientnet_lite0", "in_channels": 3,
        "classes": ["background", "Blowhole", "Crack"], "head": "sigmoid",
        "image_head": True, "kwargs": {"decoder_channels": [16, 16, 16, 16, 16]}})
    torch.manual_seed(0)
    return spec, build_model(spec).eval()


def test_head_cells_max_is_the_heads_image_logit() -> None:
    """The cells' maximum per class is the image logit the network itself returns for the
    same evenly padded frame (the head is a max over these cells)."""
    _, model = _lite0_with_head()
    assert has_head_cells(model) and not has_head_cells(OracleModel())
    x = torch.randn(1, 3, 70, 100)
    cells = head_cells(model, x)
    assert cells.shape == (2, 3, 4)  # 96 x 128 padded, stride 32
    from models.runtime import divisor_pad, reflect_pad, split_outputs
    with torch.inference_mode():
        _, img = split_outputs(model(reflect_pad(x, divisor_pad(70, 100))))
    assert img is not None
    np.testing.assert_allclose(cells.max(axis=(1, 2)), img[0].numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no image head"):
        head_cells(OracleModel(), x)


def _inspector(model: torch.nn.Module, spec: ModelSpec, threshold: float,
               locate: bool = True, device: str = "cpu") -> Inspector:
    op = OperatingPoint.model_validate({
        "rule": "image_head", "pixel_thresholds": {"Blowhole": 0.99, "Crack": 0.99},
        "min_area_px": {"Blowhole": 1, "Crack": 1}, "head_threshold": threshold})
    meta = make_meta(name="loc", spec=spec, state_dict=model.state_dict(),
                     thresholds={"Blowhole": 0.99, "Crack": 0.99}, operating_point=op)
    cfg = PipelineConfig.model_validate({"device": device, "mode": "whole",
                                         "head_location": locate})
    return Inspector(Checkpoint(meta, model), pipeline=cfg)


def test_a_part_the_head_fails_gets_its_box_and_a_passing_one_none() -> None:
    """Head rule: a camera whose part score reaches the threshold gets part_box inside the
    frame (and a 'locate' time); below the threshold, or with pipeline.head_location off,
    there is no box and no extra pass."""
    spec, model = _lite0_with_head()
    frame = np.random.default_rng(0).integers(0, 255, (90, 130), dtype=np.uint8)
    image = InputImage("cam0", frame, "Mono8")
    score = _inspector(model, spec, 1e9).inspect([image]).cameras[0].part_score
    assert score is not None
    failed = _inspector(model, spec, score - 1.0).inspect([image])
    assert failed.verdict is Verdict.FAIL and "locate" in failed.timings_ms
    box = failed.cameras[0].part_box
    assert box is not None
    x, y, w, h = box
    assert 0 <= x < x + w <= 130 and 0 <= y < y + h <= 90 and w > 0 and h > 0
    assert _inspector(model, spec, score - 1.0).head_box(image) == box  # the same pass
    passed = _inspector(model, spec, score + 1.0).inspect([image])
    assert passed.verdict is Verdict.PASS and passed.cameras[0].part_box is None
    assert "locate" not in passed.timings_ms
    off = _inspector(model, spec, score - 1.0, locate=False).inspect([image])
    assert off.verdict is Verdict.FAIL and off.cameras[0].part_box is None
