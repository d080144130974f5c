"""Tiling and blending: coverage, the window, exactness, equivariance, batching, padding."""

from __future__ import annotations

import pytest
import torch

from config.errors import PipelineError
from pipeline.tiling import (
    Predictor,
    Tiler,
    _pieces,
    blend_window,
    plan_tiles,
    predict_whole,
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


def _old_tiler(x: torch.Tensor, predict: Predictor, tile: int, overlap: float, batch: int
               ) -> torch.Tensor:
    """The tiler as it was before batching by views and folding: a Python loop of slices,
    accumulation tile by tile, multiplication by the inverse of the summed weights."""
    h, w = x.shape[-2:]
    grid = plan_tiles(h, w, tile, overlap)
    window = blend_window(grid.tile, grid.overlap)
    wsum = torch.zeros(grid.padded_shape)
    for y, x0 in grid.origins:
        wsum[y:y + grid.tile, x0:x0 + grid.tile] += window
    top, _, left, _ = grid.pad
    inv = 1.0 / wsum[top:top + h, left:left + w]
    xp = reflect_pad(x, grid.pad)
    out = None
    for start in range(0, len(grid.origins), batch):
        chunk = grid.origins[start:start + batch]
        b = torch.stack([xp[0, :, y:y + tile, x0:x0 + tile] for y, x0 in chunk])
        pred = predict(b)
        assert isinstance(pred, torch.Tensor)
        if out is None:
            out = torch.zeros((pred.shape[1], *grid.padded_shape))
        weighted = pred.float() * window
        for k, (y, x0) in enumerate(chunk):
            out[:, y:y + tile, x0:x0 + tile] += weighted[k]
    assert out is not None
    return (out[:, top:top + h, left:left + w] * inv).unsqueeze(0)


@pytest.mark.parametrize(("h", "w", "batch"), [(700, 1000, 4), (700, 1000, 11),
                                               (390, 385, 64), (200, 900, 1)])
def test_paper_tiling_equals_the_previous_implementation(h: int, w: int, batch: int) -> None:
    """384 px tiles with 25 % overlap give what the slice-and-loop tiler gave (1e-6), for
    batches that cut tile rows anywhere, hold whole rows, or all tiles at once."""
    torch.manual_seed(1)
    x = torch.randn(1, 3, h, w)
    predict = _softmax(ConvStack(layers=2))
    new = Tiler(384, 0.25, batch_size=batch)(x, predict)
    old = _old_tiler(x, predict, 384, 0.25, batch)
    assert new.shape == old.shape == (1, 3, h, w)
    assert float((new - old).abs().max()) < 1e-6


def test_pieces_cover_a_batch_with_at_most_three_rectangles() -> None:
    """Any run of tiles of a row-major grid is a partial row, whole rows, a partial row."""
    for cols in (1, 3, 19):
        total = cols * 7
        for start in range(0, total, 5):
            for stop in range(start + 1, min(total, start + 60) + 1, 7):
                pieces = _pieces(start, stop, cols)
                assert len(pieces) <= 3
                got = [r * cols + c for r0, nr, c0, nc in pieces
                       for r in range(r0, r0 + nr) for c in range(c0, c0 + nc)]
                assert got == list(range(start, stop))


def test_image_head_gives_the_maximum_over_tiles() -> None:
    """A predictor with an image head returns (probabilities, logits (N, J)); the tiler
    returns the blended probabilities (as without the head) and each logit's maximum over
    all tiles, whatever the batch; whole-frame mode passes the frame's logits through."""
    torch.manual_seed(2)
    conv = ConvStack(layers=1)
    seg = _softmax(conv)

    def with_head(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return seg(batch), torch.stack([batch.mean(dim=(1, 2, 3)), batch.amax(dim=(1, 2, 3))],
                                       dim=1)

    x = torch.randn(1, 3, 150, 230)
    grid = plan_tiles(150, 230, 64, 0.25)
    xp = reflect_pad(x, grid.pad)
    tiles = torch.stack([xp[0, :, y:y + 64, x0:x0 + 64] for y, x0 in grid.origins])
    expected = with_head(tiles)[1].amax(dim=0, keepdim=True)
    for batch in (1, 4, 100):
        probs, image = Tiler(64, 0.25, batch_size=batch).run(x, with_head)
        assert image is not None and image.shape == (1, 2)
        assert torch.allclose(image, expected, atol=1e-6)
        assert torch.allclose(probs, Tiler(64, 0.25, batch_size=batch)(x, seg), atol=1e-7)
    assert Tiler(64, 0.25, 4).run(x, seg)[1] is None
    whole_probs, whole_image = predict_whole(x, with_head)
    assert whole_probs.shape == (1, 3, 150, 230) and whole_image is not None
    assert whole_image.shape == (1, 2)


def test_a_predictor_returning_garbage_is_refused() -> None:
    """Anything but a tensor or a (probabilities, logits) pair is a PipelineError."""
    def bad(batch: torch.Tensor) -> torch.Tensor:
        return [batch]  # type: ignore[return-value]

    with pytest.raises(PipelineError, match="predictor must return"):
        Tiler(64, 0.25, 4)(torch.randn(1, 3, 64, 64), bad)


def test_tile_inputs_take_the_predictors_dtype_and_layout() -> None:
    """Tiles are written straight into the predictor's dtype and memory format (one copy)."""
    seen: list[tuple[torch.dtype, bool]] = []

    class Pred:
        dtype = torch.float64
        memory_format = torch.channels_last

        def __call__(self, batch: torch.Tensor) -> torch.Tensor:
            seen.append((batch.dtype, batch.is_contiguous(memory_format=torch.channels_last)))
            return batch[:, :2].float()

    out = Tiler(64, 0.25, 3)(torch.randn(1, 3, 100, 100), Pred())
    assert out.shape == (1, 2, 100, 100)
    assert seen and all(s == (torch.float64, True) for s in seen)


def test_out_of_memory_halves_the_batch_and_keeps_the_result() -> None:
    """A device running out of memory for a batch makes the tiler halve it and run the frame
    again (and remember the limit); one tile that does not fit is the caller's error."""
    x = torch.randn(1, 3, 200, 260)
    predict = _softmax(ConvStack(layers=1))
    sizes: list[int] = []

    def tight(batch: torch.Tensor) -> torch.Tensor:
        sizes.append(batch.shape[0])
        if batch.shape[0] > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (test)")
        return predict(batch)

    tiler = Tiler(64, 0.25, batch_size=16)
    out = tiler(x, tight)
    assert torch.allclose(out, Tiler(64, 0.25, batch_size=2)(x, predict), atol=1e-6)
    assert sizes[:2] == [12, 6] and max(sizes[2:]) <= 3  # 24 tiles: 12, then 6, then 3
    sizes.clear()
    tiler(x, tight)
    assert max(sizes) <= 3  # the limit is kept

    def never(batch: torch.Tensor) -> torch.Tensor:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (test)")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        Tiler(64, 0.25, batch_size=4)(x, never)
