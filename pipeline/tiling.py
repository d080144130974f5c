"""Cut a frame into overlapping tiles, run a predictor on batches of them, blend them back.

Everything stays on the device: tiles are sliced from the padded frame tensor, batched, passed
to the predictor, weighted by a smooth window and accumulated into the output; nothing goes to
the host per tile.

The window is 1 in the tile's middle and rises over the first and falls over the last
``overlap`` pixels as ``sin²`` / ``cos²`` of ``π/2·(i + ½)/overlap``, so neighbouring tiles'
weights sum to one in their overlap and never reach zero (frame borders covered by one tile
only keep a defined value). Outputs are divided by the accumulated weights anyway, so a
constant predictor blends back exactly, and a translation-equivariant one reproduces its
whole-frame output wherever each tile's own view is not cut by its border.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from config.errors import PipelineError

Predictor = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TileGrid:
    """Where tiles go on a frame of ``height`` x ``width``.

    The frame is reflect-padded by ``pad`` = (top, bottom, left, right) so that the tiles cover
    it exactly; ``origins`` are the tiles' top-left corners in padded coordinates.
    """

    height: int
    width: int
    tile: int
    overlap: int
    pad: tuple[int, int, int, int]
    origins: tuple[tuple[int, int], ...]

    @property
    def stride(self) -> int:
        """Distance between neighbouring tiles [px]."""
        return self.tile - self.overlap

    @property
    def padded_shape(self) -> tuple[int, int]:
        """(height, width) of the padded frame [px]."""
        top, bottom, left, right = self.pad
        return self.height + top + bottom, self.width + left + right


def _axis(length: int, tile: int, stride: int) -> tuple[int, int, list[int]]:
    n = 1 if length <= tile else math.ceil((length - tile) / stride) + 1
    covered = tile + (n - 1) * stride
    total = covered - length
    before = total // 2
    return before, total - before, [i * stride for i in range(n)]


def plan_tiles(height: int, width: int, tile: int, overlap: float) -> TileGrid:
    """The tile grid for a frame: ``tile`` px squares overlapping by ``overlap`` (share).

    The grid is centred on the frame; the padding is split evenly between the two sides.
    """
    if tile < 1 or height < 1 or width < 1:
        raise PipelineError(f"bad tiling: frame {height} x {width}, tile {tile}")
    if not 0.0 <= overlap < 0.9:
        raise PipelineError(f"tile overlap must be in [0, 0.9), got {overlap}")
    ov = min(round(tile * overlap), tile - 1)
    stride = tile - ov
    top, bottom, ys = _axis(height, tile, stride)
    left, right, xs = _axis(width, tile, stride)
    origins = tuple((y, x) for y in ys for x in xs)
    return TileGrid(height, width, tile, ov, (top, bottom, left, right), origins)


def window_1d(tile: int, overlap: int, device: torch.device | None = None) -> torch.Tensor:
    """The 1-D blending window (float32): ramps of ``overlap`` px at both ends, 1 between."""
    w = torch.ones(tile, dtype=torch.float64, device=device)
    if overlap > 0:
        i = torch.arange(overlap, dtype=torch.float64, device=device)
        ramp = torch.sin(math.pi / 2 * (i + 0.5) / overlap) ** 2
        w[:overlap] = torch.minimum(w[:overlap], ramp)
        w[tile - overlap:] = torch.minimum(w[tile - overlap:], ramp.flip(0))
    return w.to(torch.float32)


def blend_window(tile: int, overlap: int, device: torch.device | None = None) -> torch.Tensor:
    """The 2-D window ``(tile, tile)``: outer product of :func:`window_1d`."""
    w = window_1d(tile, overlap, device)
    return w[:, None] * w[None, :]


def reflect_pad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Reflect-pad ``(N, C, H, W)`` by (top, bottom, left, right), any amount.

    Pads larger than the frame are done in several reflections (torch allows < size each).
    """
    top, bottom, left, right = pad
    while top or bottom or left or right:
        h, w = x.shape[-2:]
        t, b = min(top, h - 1), min(bottom, h - 1)
        lft, r = min(left, w - 1), min(right, w - 1)
        if (t, b, lft, r) == (0, 0, 0, 0):  # 1-px dimension: reflection is impossible
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        x = F.pad(x, (lft, r, t, b), mode="reflect")
        top, bottom, left, right = top - t, bottom - b, left - lft, right - r
    return x


@dataclass
class StageClock:
    """Accumulates device-synchronised times of the tiling sub-stages (for the bench)."""

    device: torch.device
    times_ms: dict[str, float] = field(default_factory=dict)

    def sync(self) -> float:
        """Wait for the device, return ``perf_counter``."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def add(self, name: str, since: float) -> float:
        """Add the time since ``since`` to ``name``; return now."""
        now = self.sync()
        self.times_ms[name] = self.times_ms.get(name, 0.0) + (now - since) * 1000
        return now


class Tiler:
    """Runs a predictor over a frame tile by tile (batched) and blends the outputs.

    Weight sums depend only on the grid, so they are computed once per frame size and kept.
    """

    def __init__(self, tile: int, overlap: float, batch_size: int, divisor: int = 32) -> None:
        if tile % divisor:
            raise PipelineError(
                f"tile size {tile} px is not a multiple of {divisor} px, which the network "
                "needs; set pipeline.tile_size to a multiple of 32"
            )
        self.tile = tile
        self.overlap = overlap
        self.batch_size = batch_size
        self._norm: dict[tuple[int, int, str], tuple[TileGrid, torch.Tensor, torch.Tensor]] = {}

    def _grid(self, h: int, w: int, device: torch.device
              ) -> tuple[TileGrid, torch.Tensor, torch.Tensor]:
        key = (h, w, str(device))
        if key not in self._norm:
            grid = plan_tiles(h, w, self.tile, self.overlap)
            window = blend_window(grid.tile, grid.overlap, device)
            wsum = torch.zeros(grid.padded_shape, device=device)
            for y, x in grid.origins:
                wsum[y:y + grid.tile, x:x + grid.tile] += window
            top, _, left, _ = grid.pad
            inv = 1.0 / wsum[top:top + h, left:left + w]
            if len(self._norm) >= 4:  # a few frame sizes at a time
                self._norm.pop(next(iter(self._norm)))
            self._norm[key] = (grid, window, inv)
        return self._norm[key]

    def __call__(
        self, x: torch.Tensor, predict: Predictor, clock: StageClock | None = None
    ) -> torch.Tensor:
        """``(1, C, H, W)`` -> blended predictor output ``(1, K, H, W)`` float32."""
        if x.ndim != 4 or x.shape[0] != 1:
            raise PipelineError(f"tiler needs a (1, C, H, W) tensor, got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        grid, window, inv = self._grid(h, w, x.device)
        t = clock.sync() if clock else 0.0
        xp = reflect_pad(x, grid.pad)
        out: torch.Tensor | None = None
        size = grid.tile
        for start in range(0, len(grid.origins), self.batch_size):
            chunk = grid.origins[start:start + self.batch_size]
            batch = torch.stack([xp[0, :, y:y + size, x0:x0 + size] for y, x0 in chunk])
            if clock:
                t = clock.add("tile", t)
            pred = predict(batch)
            if clock:
                t = clock.add("infer", t)
            if out is None:
                out = torch.zeros((pred.shape[1], *grid.padded_shape), device=x.device)
            weighted = pred.float() * window
            for k, (y, x0) in enumerate(chunk):
                out[:, y:y + size, x0:x0 + size] += weighted[k]
            if clock:
                t = clock.add("blend", t)
        assert out is not None
        top, _, left, _ = grid.pad
        result = (out[:, top:top + h, left:left + w] * inv).unsqueeze(0)
        if clock:
            clock.add("blend", t)
        return result


def run_whole(
    x: torch.Tensor, predict: Predictor, divisor: int = 32, clock: StageClock | None = None
) -> torch.Tensor:
    """The whole frame in one pass: reflect-pad to a multiple of ``divisor``, predict, crop."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % divisor, (-w) % divisor
    pad = (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
    t = clock.sync() if clock else 0.0
    xp = reflect_pad(x, pad)
    if clock:
        t = clock.add("tile", t)
    out = predict(xp).float()
    if clock:
        clock.add("infer", t)
    return out[:, :, pad[0]:pad[0] + h, pad[2]:pad[2] + w]
