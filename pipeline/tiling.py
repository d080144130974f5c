"""Cut a frame into overlapping tiles, run a predictor on batches of them, blend them back.

Everything stays on the device: tiles are strided views of the padded frame (no copy until a
batch is filled, with at most three copies per batch), batches are as large as memory allows
on CUDA (``batch_size`` on the CPU), outputs are weighted by a smooth window and summed back
with ``F.fold``, then divided by the summed weights (precomputed per frame size, summed in the
same order, so that a constant comes back bit-exactly). On CUDA the
predictor's forward for the fixed batch shape can be captured once as a CUDA graph (the last
batch is padded to that shape; a capture that fails falls back to plain calls). Nothing goes to
the host per tile.

A predictor returns probabilities ``(N, K, h, w)``, or a pair (probabilities, image logits
``(N, J)``) for networks with an image-level head: the tiler then also returns the maximum of
the image logits over the tiles, ``(1, J)``.

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

import structlog
import torch
import torch.nn.functional as F

from config.errors import PipelineError

log = structlog.get_logger(__name__)

#: What a predictor returns: probabilities, or (probabilities, image logits).
Output = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
Predictor = Callable[[torch.Tensor], Output]
#: Share of the free device memory an automatically sized batch may take.
MEMORY_SHARE = 0.5
#: Largest automatically chosen batch [tiles].
MAX_AUTO_BATCH = 512


def split_output(out: Output) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(probabilities, image logits or None) of a predictor's output."""
    if isinstance(out, torch.Tensor):
        return out, None
    if isinstance(out, (tuple, list)) and len(out) == 2:
        return out[0], out[1]
    raise PipelineError(
        "a predictor must return a tensor (N, K, H, W) or a pair (probabilities, image "
        f"logits (N, J)), got {type(out).__name__}"
    )


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


@dataclass(frozen=True)
class _Plan:
    """A frame size's grid, window and inverse weights, on one device."""

    grid: TileGrid
    rows: int
    cols: int
    window: torch.Tensor  # (tile, tile)
    wsum: torch.Tensor  # (H, W): summed weights (never zero)


def _pieces(start: int, stop: int, cols: int) -> list[tuple[int, int, int, int]]:
    """Tiles ``start:stop`` (row-major) as at most three rectangles of the tile grid:
    (first row, rows, first column, columns)."""
    out = []
    i = start
    while i < stop:
        r, c = divmod(i, cols)
        if c == 0 and stop - i >= cols:
            n = (stop - i) // cols
            out.append((r, n, 0, cols))
            i += n * cols
        else:
            n = min(cols - c, stop - i)
            out.append((r, 1, c, n))
            i += n
    return out


class _Graph:
    """A CUDA graph of ``predict`` on a fixed input buffer; outputs valid until the next call."""

    def __init__(self, predict: Predictor, batch: torch.Tensor) -> None:
        self.input = batch
        side = torch.cuda.Stream(device=batch.device)  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream(batch.device))
        with torch.cuda.stream(side):
            for _ in range(2):  # warm-up: cuDNN picks its kernels, the allocator settles
                predict(batch)
        torch.cuda.current_stream(batch.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.output = split_output(predict(batch))

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.graph.replay()
        return self.output


class Tiler:
    """Runs a predictor over a frame tile by tile (batched) and blends the outputs.

    ``batch_size``: tiles per forward pass on the CPU (and on CUDA when ``cuda_batch`` is
    given). ``cuda_batch``: 0 = as many tiles as fit in :data:`MEMORY_SHARE` of the free device
    memory (measured once with a probe), else that many. Batches are balanced (a frame of 247
    tiles with room for 200 runs as two batches of 124). ``graphs``: capture the predictor for
    the batch shape as a CUDA graph. Weight sums depend only on the grid, so they are computed
    once per frame size and kept.
    """

    def __init__(self, tile: int, overlap: float, batch_size: int, divisor: int = 32, *,
                 cuda_batch: int = 0, graphs: bool = False) -> None:
        if tile % divisor:
            raise PipelineError(
                f"tile size {tile} px is not a multiple of {divisor} px, which the network "
                "needs; set pipeline.tile_size to a multiple of 32"
            )
        if batch_size < 1 or cuda_batch < 0:
            raise PipelineError(
                f"batch sizes must be >= 1 (cuda: 0 = automatic), got {batch_size} and "
                f"{cuda_batch}"
            )
        self.tile = tile
        self.overlap = overlap
        self.batch_size = batch_size
        self.cuda_batch = cuda_batch
        self.graphs = graphs
        self._plans: dict[tuple[int, int, str, int], _Plan] = {}
        self._auto_batch: dict[tuple[str, int, str], int] = {}
        self._limits: dict[tuple[str, int, str], int] = {}  # after out-of-memory errors
        self._last_batch = 0
        self._graph_cache: dict[tuple[int, int, str, str], _Graph] = {}  # same keys as buffers
        self._buffers: dict[tuple[int, int, str, str], torch.Tensor] = {}
        self.graph_failures = 0

    # -- planning ---------------------------------------------------------------------------

    def plan(self, h: int, w: int, device: torch.device, batch: int) -> _Plan:
        """Grid, window and summed weights for a frame of ``h`` x ``w`` on ``device``, run
        ``batch`` tiles at a time (the weights are summed in the order the outputs will be,
        so that a constant blends back bit-exactly)."""
        key = (h, w, str(device), batch)
        plan = self._plans.get(key)
        if plan is None:
            grid = plan_tiles(h, w, self.tile, self.overlap)
            rows = len({y for y, _ in grid.origins})
            cols = len(grid.origins) // rows
            window = blend_window(grid.tile, grid.overlap, device)
            wsum = torch.zeros((1, 1, *grid.padded_shape), device=device)
            for start in range(0, rows * cols, batch):
                for r, nr, c0, nc in _pieces(start, min(start + batch, rows * cols), cols):
                    part = _fold(window.expand(nr * nc, 1, grid.tile, grid.tile), grid, nr, nc)
                    y0, x0 = r * grid.stride, c0 * grid.stride
                    wsum[:, :, y0:y0 + part.shape[-2], x0:x0 + part.shape[-1]] += part
            top, _, left, _ = grid.pad
            if len(self._plans) >= 4:  # a few frame sizes at a time
                self._plans.pop(next(iter(self._plans)))
            plan = _Plan(grid, rows, cols, window, wsum[0, 0, top:top + h, left:left + w])
            self._plans[key] = plan
        return plan

    def batch_for(self, n_tiles: int, predict: Predictor, channels: int,
                  device: torch.device, dtype: torch.dtype) -> int:
        """Tiles per forward pass for a frame of ``n_tiles`` (balanced over the passes)."""
        key = (str(device), channels, str(dtype))
        if device.type != "cuda":
            most = self.batch_size
        else:
            if key not in self._auto_batch:
                self._auto_batch[key] = self.cuda_batch or self._probe(predict, channels,
                                                                       device, dtype)
            most = self._auto_batch[key]
        most = max(1, min(most, n_tiles, self._limits.get(key, most)))
        passes = math.ceil(n_tiles / most)
        return math.ceil(n_tiles / passes)

    def _probe(self, predict: Predictor, channels: int, device: torch.device,
               dtype: torch.dtype) -> int:
        """How many tiles fit: the memory two tiles take, against the free memory."""
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        probe = torch.zeros((2, channels, self.tile, self.tile), device=device, dtype=dtype)
        split_output(predict(probe))
        torch.cuda.synchronize(device)
        per_tile = max(1, (torch.cuda.max_memory_allocated(device) - base) // 2)
        free, _ = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        batch = int(max(1, min(MAX_AUTO_BATCH, free * MEMORY_SHARE // per_tile)))
        log.info("tile batch chosen", device=str(device), per_tile_mib=round(per_tile / 2**20),
                 free_gib=round(free / 2**30, 1), batch=batch)
        return batch

    def _buffer(self, batch: int, channels: int, device: torch.device, dtype: torch.dtype,
                memory_format: torch.memory_format) -> torch.Tensor:
        key = (batch, channels, str(device), str(dtype))
        buf = self._buffers.get(key)
        if buf is None:
            buf = torch.empty((batch, channels, self.tile, self.tile), device=device,
                              dtype=dtype).contiguous(memory_format=memory_format)
            if len(self._buffers) >= 4:  # a graph reads its own buffer: both go together
                old = next(iter(self._buffers))
                self._buffers.pop(old)
                self._graph_cache.pop(old, None)
            self._buffers[key] = buf
        return buf

    def _graph(self, predict: Predictor, buf: torch.Tensor) -> _Graph | None:
        key = (int(buf.shape[0]), int(buf.shape[1]), str(buf.device), str(buf.dtype))
        graph = self._graph_cache.get(key)
        if graph is None and self.graph_failures == 0:
            try:
                graph = _Graph(predict, buf)
            except torch.cuda.OutOfMemoryError:
                raise  # run() halves the batch and tries again, graphs still on
            except Exception as exc:  # capture support varies by model and platform
                self.graph_failures += 1
                log.warning("CUDA graph capture failed; running without graphs",
                            error=f"{type(exc).__name__}: {exc}")
                return None
            self._graph_cache[key] = graph
        return graph

    # -- running ----------------------------------------------------------------------------

    def __call__(
        self, x: torch.Tensor, predict: Predictor, clock: StageClock | None = None
    ) -> torch.Tensor:
        """``(1, C, H, W)`` -> blended probabilities ``(1, K, H, W)`` float32."""
        return self.run(x, predict, clock)[0]

    def run(
        self, x: torch.Tensor, predict: Predictor, clock: StageClock | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(1, C, H, W)`` -> (blended probabilities ``(1, K, H, W)`` float32, the maximum
        over tiles of the image logits ``(1, J)`` or None when the predictor has no image
        head). A CUDA out-of-memory halves the batch and starts the frame again."""
        if x.ndim != 4 or x.shape[0] != 1:
            raise PipelineError(f"tiler needs a (1, C, H, W) tensor, got {tuple(x.shape)}")
        while True:
            self._last_batch = 0
            try:
                return self._run(x, predict, clock)
            except torch.cuda.OutOfMemoryError:
                if self._last_batch <= 1:
                    raise
                owner = getattr(predict, "__self__", predict)
                key = (str(x.device), int(x.shape[1]), str(getattr(owner, "dtype", x.dtype)))
                self._limits[key] = self._last_batch // 2
                self._graph_cache.clear()
                self._buffers.clear()
                if x.device.type == "cuda":
                    torch.cuda.empty_cache()
                log.warning("out of device memory; halving the tile batch",
                            batch=self._limits[key])

    def _run(
        self, x: torch.Tensor, predict: Predictor, clock: StageClock | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        c = int(x.shape[1])
        device = x.device
        grid = plan_tiles(h, w, self.tile, self.overlap)
        n_tiles = len(grid.origins)
        owner = getattr(predict, "__self__", predict)  # a bound method: its object's
        dtype: torch.dtype = getattr(owner, "dtype", x.dtype)
        memory_format: torch.memory_format = getattr(owner, "memory_format",
                                                     torch.contiguous_format)
        batch = self.batch_for(n_tiles, predict, c, device, dtype)
        self._last_batch = batch
        plan = self.plan(h, w, device, batch)
        size = grid.tile
        t = clock.sync() if clock else 0.0
        xp = reflect_pad(x, grid.pad).contiguous()
        # (rows, cols, C, tile, tile) view of every tile; nothing is copied yet.
        tiles = xp[0].unfold(1, size, grid.stride).unfold(2, size, grid.stride).permute(
            1, 2, 0, 3, 4)
        buf = self._buffer(batch, c, device, dtype, memory_format)
        graph = self._graph(predict, buf) if (self.graphs and device.type == "cuda") else None
        if graph is not None:
            buf = graph.input  # the buffer the graph was captured on
        out: torch.Tensor | None = None
        image: torch.Tensor | None = None
        for start in range(0, n_tiles, batch):
            stop = min(start + batch, n_tiles)
            pieces = _pieces(start, stop, plan.cols)
            at = 0
            for r, nr, c0, nc in pieces:
                n = nr * nc
                buf[at:at + n].view(nr, nc, c, size, size).copy_(
                    tiles[r:r + nr, c0:c0 + nc])
                at += n
            if clock:
                t = clock.add("tile", t)
            probs, img = graph() if graph is not None else split_output(predict(buf))
            if clock:
                t = clock.add("infer", t)
            if out is None:
                out = torch.zeros((1, probs.shape[1], *grid.padded_shape), device=device)
            weighted = probs[:stop - start].float() * plan.window
            at = 0
            for r, nr, c0, nc in pieces:
                n = nr * nc
                part = _fold(weighted[at:at + n], grid, nr, nc)
                y0, x0 = r * grid.stride, c0 * grid.stride
                out[:, :, y0:y0 + part.shape[-2], x0:x0 + part.shape[-1]] += part
                at += n
            if img is not None:
                m = img[:stop - start].float().amax(dim=0, keepdim=True)
                image = m if image is None else torch.maximum(image, m)
            if clock:
                t = clock.add("blend", t)
        assert out is not None
        top, _, left, _ = grid.pad
        result = out[:, :, top:top + h, left:left + w] / plan.wsum
        if clock:
            clock.add("blend", t)
        return result, image

    def warmup(self, predict: Predictor, channels: int, device: torch.device,
               sizes: list[tuple[int, int]]) -> None:
        """Run a blank frame of each size (``(height, width)``) once: chooses the batch,
        captures the graph, lets ``torch.compile`` compile; nothing is kept but those."""
        for h, w in sizes:
            self.run(torch.zeros((1, channels, h, w), device=device), predict)


def _fold(weighted: torch.Tensor, grid: TileGrid, rows: int, cols: int) -> torch.Tensor:
    """Sum ``rows`` x ``cols`` weighted tiles ``(rows * cols, K, t, t)`` (row-major) at their
    grid positions: ``(1, K, t + (rows - 1) * stride, t + (cols - 1) * stride)``."""
    n, k, t, _ = weighted.shape
    height, width = t + (rows - 1) * grid.stride, t + (cols - 1) * grid.stride
    cols_in = weighted.reshape(n, k * t * t).transpose(0, 1).unsqueeze(0)
    return F.fold(cols_in, (height, width), t, stride=grid.stride)


def run_whole(
    x: torch.Tensor, predict: Predictor, divisor: int = 32, clock: StageClock | None = None
) -> torch.Tensor:
    """The whole frame in one pass: reflect-pad to a multiple of ``divisor``, predict, crop."""
    return predict_whole(x, predict, divisor, clock)[0]


def predict_whole(
    x: torch.Tensor, predict: Predictor, divisor: int = 32, clock: StageClock | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`run_whole` returning (probabilities, image logits ``(1, J)`` or None)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % divisor, (-w) % divisor
    pad = (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
    t = clock.sync() if clock else 0.0
    xp = reflect_pad(x, pad)
    if clock:
        t = clock.add("tile", t)
    probs, image = split_output(predict(xp))
    out = probs.float()[:, :, pad[0]:pad[0] + h, pad[2]:pad[2] + w]
    if clock:
        clock.add("infer", t)
    return out, (image.float() if image is not None else None)
