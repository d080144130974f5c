"""Tiling and blending: coverage, the window, exactness, equivariance, batching, padding."""

from __future__ import annotations

import pytest
import torch

from config.errors import PipelineError
from pipeline.tiling import (
    Predictor,
    Tiler,
    blend_window,
    plan_tiles,
    reflect_pad,
    run_whole,
    window_1d,
)
from tests.models.tester import ConstantModel, ConvStack, PointwiseModel


def _softmax(model: torch.nn.Module) -> Predictor:
    def predict(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(model(batch), dim=1)
    return predict


def test_grid_for_a_20_mp_frame() -> None:
    """384 px tiles with 25 % overlap cover 5472 x 3648 with 19 x 13 tiles, centred."""
    grid = plan_tiles(3648, 5472, 384, 0.25)
    assert grid.overlap == 96 and grid.stride == 288
    assert len(grid.origins) == 19 * 13
    ph, pw = grid.padded_shape
    assert (ph, pw) == (384 + 12 * 288, 384 + 18 * 288)
    top, bottom, left, right = grid.pad
    assert abs(top - bottom) <= 1 and abs(left - right) <= 1


def test_window_is_a_partition_of_unity_between_the_outer_ramps() -> None:
    """Overlapping windows sum to exactly one wherever two ramps meet, and never to zero."""
    tile, ov = 64, 16
    w = window_1d(tile, ov)
    assert float(w.min()) > 0 and float(w.max()) == 1.0
    stride = tile - ov
    total = torch.zeros(tile + 3 * stride)
    for i in range(4):
        total[i * stride:i * stride + tile] += w
    assert torch.allclose(total[ov:-ov], torch.ones_like(total[ov:-ov]), atol=1e-6)
    assert blend_window(tile, ov).shape == (tile, tile)


@pytest.mark.parametrize(("h", "w"), [(100, 130), (64, 64), (37, 200), (20, 9), (1, 70)])
def test_constant_model_blends_back_exactly(h: int, w: int) -> None:
    """Any frame size (smaller than a tile, one pixel high, ...) gives the constant back."""
    model = ConstantModel([0.25, -1.0, 3.0])
    tiler = Tiler(64, 0.25, batch_size=3)
    out = tiler(torch.randn(1, 3, h, w), model)
    assert out.shape == (1, 3, h, w)
    expected = torch.tensor([0.25, -1.0, 3.0]).view(1, 3, 1, 1).expand_as(out)
    assert torch.allclose(out, expected, atol=1e-6)


def test_pointwise_model_tiled_equals_whole_frame_everywhere() -> None:
    """A model without spatial context gives the same map tiled and whole, borders included."""
    x = torch.randn(1, 3, 150, 211)
    predict = _softmax(PointwiseModel())
    tiled = Tiler(64, 0.25, batch_size=5)(x, predict)
    whole = predict(x)
    assert torch.allclose(tiled, whole, atol=1e-6)


def test_equivariant_model_tiled_equals_whole_frame_away_from_borders() -> None:
    """A 3 x 3 conv stack (receptive radius 2) tiled agrees with the whole-frame pass away from
    the frame border; the only difference is where a tile's own zero padding reaches pixels,
    which the window weights down to well under one percent."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 190, 260)
    predict = _softmax(ConvStack(layers=2))
    tiled = Tiler(96, 0.25, batch_size=4)(x, predict)
    whole = predict(x)
    r = 2
    diff = (tiled - whole)[..., r:-r, r:-r].abs()
    assert float(diff.max()) < 5e-3
    assert float(diff.mean()) < 1e-4


def test_batch_size_does_not_change_the_result() -> None:
    """One tile per batch and many tiles per batch give identical maps."""
    x = torch.randn(1, 3, 130, 170)
    predict = _softmax(ConvStack(layers=1))
    a = Tiler(64, 0.25, batch_size=1)(x, predict)
    b = Tiler(64, 0.25, batch_size=16)(x, predict)
    assert torch.allclose(a, b, atol=1e-6)


def test_reflect_pad_beyond_the_frame_size() -> None:
    """Pads larger than the frame reflect repeatedly instead of failing."""
    x = torch.arange(3.0).view(1, 1, 1, 3)
    out = reflect_pad(x, (0, 0, 5, 4))
    assert out.shape == (1, 1, 1, 12)
    assert out[0, 0, 0, 5:8].tolist() == [0.0, 1.0, 2.0]
    assert out[0, 0, 0, 4].item() == 1.0  # the reflection, not a copy of the edge


def test_whole_frame_mode_pads_to_the_network_stride() -> None:
    """Whole-frame inference sees multiples of 32 and returns the frame's own size."""
    seen: list[tuple[int, ...]] = []

    def predict(batch: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(batch.shape))
        return batch[:, :2]

    out = run_whole(torch.randn(1, 3, 50, 70), predict)
    assert seen == [(1, 3, 64, 96)]
    assert out.shape == (1, 2, 50, 70)


def test_tile_size_must_fit_the_network_stride() -> None:
    """A tile size that is not a multiple of 32 is refused with the fix in the message."""
    with pytest.raises(PipelineError, match="multiple of 32"):
        Tiler(100, 0.25, 4)
