"""Models are qualified by the booth's own code: the Inspector-backed scorer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from config.pipeline import PipelineConfig
from models.build import ModelSpec, build_model
from models.checkpoint import Checkpoint, load_checkpoint, make_meta, save_checkpoint
from models.data import load_dataset
from models.runtime import predict_image
from models.scoring import RuntimeScorer
from station.qualify import InspectorScorer, run_evaluation
from tests.models.test_data import make_tile_dataset


def lite0_with_head(tmp_path: Path) -> Path:
    """A small lite0 UNet with an image head, random weights, as a checkpoint file."""
    spec = ModelSpec.model_validate({
        "architecture": "unet", "encoder": "tu-efficientnet_lite0", "head": "sigmoid",
        "classes": ["background", "Blowhole", "Crack"], "image_head": True,
        "kwargs": {"decoder_channels": [16, 16, 8, 8, 8]}})
    torch.manual_seed(0)
    path = tmp_path / "m.pt"
    save_checkpoint(path, build_model(spec), name="m", spec=spec,
                    thresholds={"Blowhole": 0.5, "Crack": 0.5})
    return path


@pytest.mark.parametrize("height,width", [(64, 96), (70, 45)])
def test_inspector_whole_mode_gives_the_runtime_probabilities(
    tmp_path: Path, height: int, width: int
) -> None:
    """Training validation (models.runtime) and the station (pipeline.Inspector, whole mode,
    CPU float32) compute the same probabilities and the same part score for one image."""
    ckpt = load_checkpoint(lite0_with_head(tmp_path))
    img = np.random.default_rng(1).integers(0, 255, (height, width), dtype=np.uint8)
    meta = ckpt.meta
    ref, ref_logits = predict_image(ckpt.model, meta.spec.head, meta.normalisation.mean,
                                    meta.normalisation.std, 3, img)
    scorer = InspectorScorer.for_checkpoint(
        ckpt, "cpu", PipelineConfig.model_validate({"mode": "whole", "device": "cpu"}))
    probs, score = scorer.probabilities(img)
    assert probs.shape == ref.shape
    assert float(np.abs(probs - ref).max()) < 1e-5
    assert ref_logits is not None and score == pytest.approx(float(ref_logits.max()), abs=1e-5)


def test_tiled_scoring_agrees_inside_the_frame(tmp_path: Path) -> None:
    """The booth's tiles (64 px, 25 % overlap here) on a 160 x 200 image: the part score is the
    maximum over tiles, and probabilities stay close to whole-image ones in the interior."""
    ckpt = load_checkpoint(lite0_with_head(tmp_path))
    img = np.random.default_rng(2).integers(0, 255, (160, 200), dtype=np.uint8)
    whole = InspectorScorer.for_checkpoint(
        ckpt, "cpu", PipelineConfig.model_validate({"mode": "whole", "device": "cpu"}))
    tiled = InspectorScorer.for_checkpoint(
        ckpt, "cpu", PipelineConfig.model_validate({"mode": "tiled", "tile_size": 64,
                                                    "batch_size": 2, "device": "cpu"}))
    assert not tiled.inspector.runs_whole(160, 200)
    pw, _ = whole.probabilities(img)
    pt, st = tiled.probabilities(img)
    assert pt.shape == pw.shape and st is not None
    assert float(np.median(np.abs(pt - pw))) < 0.05


def test_largest_regions_are_the_defects_the_station_finds(tmp_path: Path) -> None:
    """At the Inspector's own thresholds the largest region per class is the largest defect of
    Inspector.postprocess; at other thresholds the same classify + components apply, and
    regions under pipeline.min_area_px do not exist."""
    ckpt = load_checkpoint(lite0_with_head(tmp_path))
    scorer = InspectorScorer.for_checkpoint(ckpt, "cpu")
    probs = np.zeros((2, 40, 40), np.float32)
    probs[0, 2:12, 2:12] = 0.9   # a 100 px Blowhole
    probs[1, 30:32, 30:31] = 0.8  # a 2 px Crack: under min_area_px (4)
    own = scorer.largest_regions(probs, dict(scorer.inspector.thresholds))
    assert own == {"Blowhole": 100, "Crack": 0}
    other = scorer.largest_regions(probs, {"Blowhole": 0.95, "Crack": 0.1})
    assert other["Blowhole"] == 0


def test_run_evaluation_reports_the_operating_point(tmp_path: Path) -> None:
    """station evaluate's engine: report.json names the operating point and the pipeline,
    and the Inspector path agrees with the runtime path on a whole-mode run."""
    data = make_tile_dataset(tmp_path / "tiles", per_class=2)
    path = lite0_with_head(tmp_path)
    doc = run_evaluation(path, data, "folder-classes", tmp_path / "rep", "cpu", progress=False,
                         pipeline=PipelineConfig.model_validate({"mode": "whole"}))
    info = json.loads((tmp_path / "rep" / "report.json").read_text())["info"]
    assert info["operating_point"].startswith("op-") and "whole" in info["pipeline"]
    ckpt = load_checkpoint(path)
    from models.evaluate import evaluate

    ds = load_dataset(data, "folder-classes")
    ref = evaluate(RuntimeScorer(ckpt), ckpt.meta.spec.defect_classes,
                   ckpt.meta.effective_operating_point(), ds).report()
    assert doc["pixel.f1"] == pytest.approx(ref["pixel.f1"], abs=1e-6)
    assert doc["image.defect_recall"] == ref["image.defect_recall"]


def test_softmax_checkpoints_score_too() -> None:
    """A softmax network (background channel) goes through the same scorer."""
    spec = ModelSpec.model_validate({"architecture": "plain-unet", "encoder": None,
                                     "classes": ["background", "a"], "head": "softmax",
                                     "kwargs": {"base_channels": 4, "depth": 2}})
    torch.manual_seed(0)
    model = build_model(spec).eval()
    ckpt = Checkpoint(make_meta(name="s", spec=spec, state_dict=model.state_dict()), model)
    scorer = InspectorScorer.for_checkpoint(ckpt, "cpu")
    probs, score = scorer.probabilities(np.zeros((32, 32), np.uint8))
    assert probs.shape == (1, 32, 32) and score is None
    assert set(scorer.largest_regions(probs, dict(scorer.inspector.thresholds))) == {"a"}


def test_a_frame_smaller_than_a_tile_batch_runs_whole_in_tiled_mode(tmp_path: Path) -> None:
    """Tiled mode with the booth's 384 px tiles on a magnetic-tile-sized image (and on one of
    at most pipeline.batch_size tiles' pixels): one pass, bit-identical to whole mode, so the
    image head never sees a frame mirrored out to a tile; larger frames are tiled."""
    ckpt = load_checkpoint(lite0_with_head(tmp_path))
    img = np.random.default_rng(3).integers(0, 255, (110, 230), dtype=np.uint8)
    whole = InspectorScorer.for_checkpoint(
        ckpt, "cpu", PipelineConfig.model_validate({"mode": "whole", "device": "cpu"}))
    tiled = InspectorScorer.for_checkpoint(ckpt, "cpu")
    assert tiled.inspector.cfg.mode == "tiled" and tiled.inspector.runs_whole(110, 230)
    assert tiled.inspector.runs_whole(384, 384 * 8)
    assert not tiled.inspector.runs_whole(385, 384 * 8)
    always = InspectorScorer.for_checkpoint(
        ckpt, "cpu", PipelineConfig.model_validate({"small_frames": "tiled", "device": "cpu"}))
    assert not always.inspector.runs_whole(110, 230)
    pw, sw = whole.probabilities(img)
    pt, st = tiled.probabilities(img)
    assert np.array_equal(pw, pt) and sw == st


def test_flips_average_the_frame_and_its_mirrors_as_the_runtime_does(tmp_path: Path) -> None:
    """pipeline.flips on: probabilities and part score are the mean over the frame and its
    horizontal and vertical mirrors, as models.runtime.predict_image(flips=True) computes
    them; the scorer says it flips (so an operating point chosen on it records that)."""
    ckpt = load_checkpoint(lite0_with_head(tmp_path))
    img = np.random.default_rng(4).integers(0, 255, (70, 90), dtype=np.uint8)
    meta = ckpt.meta
    ref, ref_logits = predict_image(ckpt.model, meta.spec.head, meta.normalisation.mean,
                                    meta.normalisation.std, 3, img, flips=True)
    scorer = InspectorScorer.for_checkpoint(ckpt, "cpu", flips=True)
    assert scorer.flips and scorer.inspector.model_info["flips"] is True
    probs, score = scorer.probabilities(img)
    assert float(np.abs(probs - ref).max()) < 1e-5
    assert ref_logits is not None and score == pytest.approx(float(ref_logits.max()), abs=1e-5)
    plain, _ = InspectorScorer.for_checkpoint(ckpt, "cpu").probabilities(img)
    assert float(np.abs(plain - probs).max()) > 1e-4


def test_rechoose_writes_the_same_weights_with_a_new_operating_point(tmp_path: Path) -> None:
    """station model operating-point's engine: the new checkpoint has the old weights, an
    operating point chosen on the listed images (with flips when asked, at the asked target)
    and says where it came from."""
    from station.qualify import rechoose_operating_point

    data = make_tile_dataset(tmp_path / "tiles", per_class=2)
    lst = tmp_path / "val.txt"
    lst.write_text("\n".join(f"{c}/exp{k}_num_{c}{k}" for c in ("Free", "Blowhole", "Crack")
                             for k in range(2)) + "\n")
    src = lite0_with_head(tmp_path)
    out = tmp_path / "new.ckpt"
    op = rechoose_operating_point(src, data, "folder-classes", str(lst), out, flips=True,
                                  max_false_reject=0.5)
    new, old = load_checkpoint(out), load_checkpoint(src)
    assert new.meta.weights_sha256 == old.meta.weights_sha256
    assert new.meta.operating_point == op and op.flips and op.false_reject_target == 0.5
    assert "val.txt" in op.chosen_on and "6 images" in op.chosen_on
    assert new.meta.provenance["operating_point_rechosen"]["from"] == old.meta.model_id
