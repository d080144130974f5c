"""The pipeline bench: synthetic BayerRG8 frames through every stage, a naive loop beside it,
the worst-case post-processing, and the daemon end to end.

``station bench`` (``station/commands/bench.py``) and ``python -m bench.pipeline_bench`` run
:func:`main_args`. Heavy modules (torch, the pipeline) are imported when a bench runs, so the
command line stays quick to start.

Pipeline bench (:func:`run_bench`), per model and mode: the station's own stages
(:class:`pipeline.Inspector`, device-synchronised per stage; median and p99 over ``repeats``
after ``warmup`` runs); the naive reference (the seed paper's loop: demosaic and normalise on
the host, cut tiles on the host, one tile at a time to the device in float32, every output back,
blend on the host with the same window), with the speed ratio and how far apart the outputs are
(max |Δp| over all class probabilities, and the share of pixels whose class differs); when
both modes run, the same agreement between tiled and whole-frame; and always the worst case for
post-processing: a noise probability map (independent uniform noise per class, thresholded
as usual: millions of specks) and a speck map (isolated 2 x 2 px specks on every other block:
the most regions a frame can hold), with the time post-processing takes on each.

End-to-end bench (:func:`run_e2e`): starts ``station run`` with two replay cameras serving
BayerRG8 frames of the given size, triggers parts as fast as the queue allows through the
command socket, then one at a time, and reports parts/s, latency percentiles, and whether any
part was lost, answered BUSY or published out of order.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from station.bench_e2e import percentile

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch

    from models.checkpoint import Checkpoint
    from pipeline.inspector import Inspector

#: The reference camera's frame (width, height).
FULL_SIZE = (5472, 3648)
#: Default frame on the CPU: a quarter of the width and height (1/16 of the pixels).
CPU_SIZE = (1368, 912)
#: Classes of the random-weight networks (the magnetic-tile set's).
CLASSES = ["background", "Blowhole", "Break", "Crack", "Fray", "Uneven"]
#: OpenCV fills the outermost demosaiced row/column differently; its effect reaches this far
#: into the network's output, so the difference is also reported without this margin [px].
INTERIOR_MARGIN = 64
STAGES = ("preprocess", "tile", "infer", "blend", "postprocess", "verdict", "total")
#: The worst-case maps for post-processing.
NOISE_KINDS = ("noise", "specks")
#: The model name that means the checkpoint given with ``--model``.
CHECKPOINT_MODEL = "default"

Say = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


@dataclass
class BenchSettings:
    """What to measure."""

    models: list[str] = field(default_factory=lambda: [CHECKPOINT_MODEL])
    checkpoint: str = "default"
    modes: list[str] = field(default_factory=lambda: ["tiled"])
    device: str = "auto"
    width: int | None = None
    height: int | None = None
    repeats: int | None = None
    warmup: int | None = None
    tile_size: int = 384
    overlap: float = 0.25
    batch_size: int = 8
    cuda_batch_size: int = 0
    half: bool = True
    half_dtype: str = "float16"
    graphs: bool = True
    compile: bool = False
    region_block: int = 4
    naive: bool = True
    only_noise: bool = False
    seed: int = 0


@dataclass
class RunResult:
    """Figures of one model in one mode (times in ms)."""

    model: dict[str, Any]
    mode: str
    frame: dict[str, Any]
    tiles: int
    batch: int | None
    graphs: bool
    stages_ms: dict[str, float]
    stages_p99_ms: dict[str, float]
    runs_ms: list[float]
    naive_ms: float | None = None
    speedup: float | None = None
    max_abs_diff: float | None = None
    max_abs_diff_interior: float | None = None
    class_disagreement: float | None = None
    vs_tiled: dict[str, float] | None = None
    worst_case: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the image head's box for a part its rule failed (pipeline/locate.py): median and p99
    #: of preprocess + encoder + head cells + hot spot, once per model (None without a head)
    locate_ms: dict[str, float] | None = None
    error: str | None = None


@dataclass
class BenchReport:
    """One invocation: where it ran, with what, and every run."""

    environment: dict[str, Any]
    settings: dict[str, Any]
    runs: list[RunResult] = field(default_factory=list)
    e2e: dict[str, Any] | None = None


def git_commit() -> str:
    """The commit measured: ``$BENCH_COMMIT``, ``.bench-commit`` at the repository root (for
    copies without ``.git``), ``git rev-parse HEAD`` (+ ``-dirty``), else ``unknown``."""
    env = os.environ.get("BENCH_COMMIT")
    if env:
        return env.strip()
    root = Path(__file__).resolve().parents[1]
    marker = root / ".bench-commit"
    if marker.is_file():
        return marker.read_text().strip() or "unknown"
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout
        return head + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: str) -> dict[str, Any]:
    """Device, versions and commit, for the JSON."""
    import torch

    env: dict[str, Any] = {
        "device": device, "torch": torch.__version__, "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "platform": platform.platform(), "git_commit": git_commit(),
        "gpu": "-", "cuda": torch.version.cuda, "cudnn": None,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
        env["cudnn"] = torch.backends.cudnn.version()  # type: ignore[no-untyped-call]
    return env


def synthetic_frame(height: int, width: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    """A BayerRG8 mosaic of a shaded, textured tile with a few bright spots and a dark scratch."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 110 + 40 * np.sin(xx / 97.0) * np.cos(yy / 131.0) - 30 * (xx / width)
    base += rng.normal(0, 6, (height, width)).astype(np.float32)
    for _ in range(12):
        cx, cy = rng.integers(0, width), rng.integers(0, height)
        r = int(rng.integers(4, 40))
        cv2.circle(base, (int(cx), int(cy)), r, 230.0, -1)
    cv2.line(base, (width // 5, height // 3), (width // 2, height // 2), 15.0, 5)
    mosaic = base.copy()
    mosaic[0::2, 0::2] *= 1.1  # red sites
    mosaic[1::2, 1::2] *= 0.8  # blue sites
    return np.asarray(np.clip(mosaic, 0, 255), dtype=np.uint8)


def worst_case_probs(kind: str, classes: int, height: int, width: int, device: torch.device,
                     seed: int = 0, background: bool = True) -> torch.Tensor:
    """``(1, classes, H, W)`` probabilities that are hardest on post-processing
    (``background``: channel 0 is the background, as for softmax heads; sigmoid heads have
    defect channels only).

    ``noise``: independent uniform noise per class (about every other pixel passes a 0.5
    threshold: millions of 8-connected components). ``specks``: 2 x 2 px specks of a defect
    class (the default minimum area), one on every other block of 4 x 4 px in both directions
    (isolated blocks: the most regions a frame can hold), background everywhere else.
    """
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    if kind == "noise":
        return torch.rand((1, classes, height, width), generator=g, device=device)
    if kind == "specks":
        probs = torch.zeros((1, classes, height, width), device=device)
        defect = 1 if background else 0
        if background:
            probs[0, 0] = 1.0
        for dy in (1, 2):
            for dx in (1, 2):
                if background:
                    probs[0, 0, dy::8, dx::8] = 0.0
                probs[0, defect, dy::8, dx::8] = 1.0
        return probs
    raise ValueError(f"unknown worst case {kind!r}; expected one of {', '.join(NOISE_KINDS)}")


def _spec(encoder: str) -> Any:
    from models.build import ModelSpec

    return ModelSpec(architecture="unet", encoder=encoder, in_channels=3, classes=CLASSES)


def _checkpoint(name: str, s: BenchSettings) -> Checkpoint:
    import torch

    from models import DEFAULT_CHECKPOINT
    from models.build import build_model
    from models.checkpoint import Checkpoint, load_checkpoint, make_meta

    if name == CHECKPOINT_MODEL:
        return load_checkpoint(DEFAULT_CHECKPOINT if s.checkpoint == "default" else s.checkpoint)
    torch.manual_seed(s.seed)
    spec = _spec(name)
    model = build_model(spec).eval()
    meta = make_meta(name=f"bench-unet-{name}", spec=spec, state_dict=model.state_dict())
    return Checkpoint(meta=meta, model=model)


def naive_reference(
    model: torch.nn.Module, frame: npt.NDArray[np.uint8], mean: Sequence[float],
    std: Sequence[float], tile: int, overlap: float, device: torch.device, head: str,
) -> npt.NDArray[np.float32]:
    """The seed-style loop; returns class probabilities ``(C, H, W)`` on the host."""
    import cv2
    import numpy as np
    import torch

    from models.runtime import split_outputs
    from pipeline.tiling import plan_tiles, window_1d

    h, w = frame.shape
    # OpenCV on the frame scaled to 16 bit, so its result is not rounded to 8 bit.
    wide = frame.astype(np.uint16) * 257
    rgb = cv2.cvtColor(wide, cv2.COLOR_BayerBG2RGB).astype(np.float32) / 65535.0
    img = ((rgb - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).transpose(2, 0, 1)
    grid = plan_tiles(h, w, tile, overlap)
    top, bottom, left, right = grid.pad
    padded = np.pad(img, ((0, 0), (top, bottom), (left, right)), mode="reflect")
    w1 = window_1d(grid.tile, grid.overlap).numpy()
    window = w1[:, None] * w1[None, :]
    acc: npt.NDArray[np.float32] | None = None
    wsum = np.zeros(grid.padded_shape, np.float32)
    with torch.inference_mode():
        for y, x in grid.origins:
            t = torch.from_numpy(np.ascontiguousarray(padded[:, y:y + tile, x:x + tile]))
            logits, _ = split_outputs(model(t.unsqueeze(0).to(device)))
            probs = torch.softmax(logits, 1) if head == "softmax" else torch.sigmoid(logits)
            out = probs[0].cpu().numpy()
            if acc is None:
                acc = np.zeros((out.shape[0], *grid.padded_shape), np.float32)
            acc[:, y:y + tile, x:x + tile] += out * window
            wsum[y:y + tile, x:x + tile] += window
    assert acc is not None
    return (acc / wsum)[:, top:top + h, left:left + w]


def _inspector(ckpt: Checkpoint, s: BenchSettings, mode: str) -> Inspector:
    from config.pipeline import PipelineConfig
    from config.rules import RulesConfig
    from pipeline.inspector import Inspector

    pcfg = PipelineConfig.model_validate({
        "device": s.device, "tile_size": s.tile_size, "overlap": s.overlap,
        "batch_size": s.batch_size, "cuda_batch_size": s.cuda_batch_size, "half": s.half,
        "half_dtype": s.half_dtype, "cuda_graphs": s.graphs, "compile": s.compile,
        "region_block": s.region_block, "mode": mode, "small_frames": "tiled",
        # one pass per frame: the naive loop and the agreement figures compare single passes;
        # a model whose operating point wants flips costs three of them in the booth
        "flips": "off",
        "max_defects": 100_000,
    })
    return Inspector(ckpt, pipeline=pcfg, rules=RulesConfig.model_validate({}))


def measure_worst_case(ins: Inspector, height: int, width: int, repeats: int, warmup: int,
                       seed: int = 0) -> dict[str, dict[str, Any]]:
    """Post-processing time on each worst-case map (median, p99), and what it found."""
    import torch

    from pipeline.tiling import StageClock

    out: dict[str, dict[str, Any]] = {}
    softmax = ins.spec.head == "softmax"
    classes = len(ins.class_names) if softmax else len(ins.class_names) - 1
    for kind in NOISE_KINDS:
        probs = worst_case_probs(kind, classes, height, width, ins.device, seed, softmax)
        times = []
        cam = None
        for i in range(warmup + repeats):
            clock = StageClock(ins.device)
            t = clock.sync()
            cam = ins.postprocess("cam0", probs, 0.05)
            took = (clock.sync() - t) * 1000
            if i >= warmup:
                times.append(took)
        assert cam is not None
        out[kind] = {
            "postprocess_ms": round(percentile(times, 50), 3),
            "postprocess_p99_ms": round(percentile(times, 99), 3),
            "runs_ms": [round(v, 3) for v in times],
            "regions": cam.regions_found, "capped": cam.capped,
            "listed": len(cam.defects),
            "defect_pixels": int(sum(d.area_px for d in cam.defects)),
        }
        del probs
        if ins.device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def _agreement(a: torch.Tensor, b: torch.Tensor, ins: Inspector) -> tuple[float, float, float]:
    """(max |Δp|, max |Δp| 64 px inside the border, share of pixels whose class differs)."""
    from pipeline.postprocess import classify, defect_probabilities

    diff = (a.float() - b.float()).abs().amax(dim=1)[0]
    m = INTERIOR_MARGIN
    inner = diff[m:-m, m:-m]
    thr = ins._thresholds_t.to(a.device)
    head = ins.spec.head
    la, _ = classify(defect_probabilities(a, head), thr)
    lb, _ = classify(defect_probabilities(b.to(a.device), head), thr)
    return (float(diff.max()), float(inner.max()) if inner.numel() else float("nan"),
            float((la != lb).float().mean()))


def run_bench(s: BenchSettings, log: Say | None = None) -> BenchReport:
    """Measure every model in every mode; ``log`` hears about progress. A run that fails
    (out of memory, a capture error, ...) is recorded with its error and the next one runs."""
    import copy
    import gc

    import torch

    from config.errors import PipelineError
    from pipeline.types import InputImage

    say = log or _quiet
    for mode in s.modes:
        if mode not in ("tiled", "whole"):
            raise PipelineError(f"bench mode {mode!r}: expected tiled or whole")
    cuda = s.device == "cuda" or (s.device == "auto" and torch.cuda.is_available())
    width, height = (s.width, s.height) if s.width and s.height else (
        FULL_SIZE if cuda else CPU_SIZE)
    repeats = s.repeats if s.repeats is not None else (10 if cuda else 1)
    warmup = s.warmup if s.warmup is not None else 1
    report = BenchReport(environment=environment("cuda" if cuda else "cpu"), settings={
        **asdict(s), "width": width, "height": height, "repeats": repeats, "warmup": warmup})
    for name in s.models:  # a misspelt encoder fails now, not after the others ran
        if name != CHECKPOINT_MODEL:
            _spec(name)
    image = InputImage("cam0", synthetic_frame(height, width, s.seed), "BayerRG8")
    for name in s.models:
        say(f"model {name}: building ...")
        ckpt = _checkpoint(name, s)
        pristine = copy.deepcopy(ckpt.model).float() if s.naive else None  # fp32, untouched
        shared: dict[str, Any] = {"probs": {}, "ref": None, "naive_ms": None,
                                  "pristine": pristine}
        for mode in s.modes:
            try:
                run = _measure(name, mode, ckpt, image, s, repeats, warmup, shared, say)
            except Exception as exc:  # recorded; the other runs still count
                say(f"{name} {mode}: FAILED: {type(exc).__name__}: {exc}")
                run = RunResult(model={"name": name}, mode=mode,
                                frame={"width": width, "height": height,
                                       "pixel_format": "BayerRG8"},
                                tiles=0, batch=None, graphs=False, stages_ms={},
                                stages_p99_ms={}, runs_ms=[],
                                error=f"{type(exc).__name__}: {exc}")
            report.runs.append(run)
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
        del shared, ckpt, pristine
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return report


def _measure(name: str, mode: str, ckpt: Checkpoint, image: Any, s: BenchSettings,
             repeats: int, warmup: int, shared: dict[str, Any], say: Say) -> RunResult:
    """One model in one mode: the stages, the naive loop (once per model), the agreement,
    the worst cases."""
    from models.build import count_parameters
    from pipeline.tiling import StageClock, plan_tiles
    from pipeline.verdict import judge

    height, width = image.pixels.shape
    ins = _inspector(ckpt, s, mode)
    device = ins.device
    grid = plan_tiles(height, width, s.tile_size, s.overlap)
    tiles = 1 if mode == "whole" else len(grid.origins)
    model_info = {**{k: v for k, v in ins.model_info.items()
                     if k in ("model_id", "architecture", "encoder", "dtype", "trained")},
                  "flips_in_booth": bool(ckpt.meta.operating_point
                                         and ckpt.meta.operating_point.flips),
                  "name": name, "parameters": count_parameters(ckpt.model)}
    run = RunResult(model=model_info, mode=mode,
                    frame={"width": width, "height": height, "pixel_format": "BayerRG8"},
                    tiles=tiles, batch=None, graphs=False, stages_ms={}, stages_p99_ms={},
                    runs_ms=[])
    if not s.only_noise:
        say(f"{name} {mode}: {width} x {height} BayerRG8 on {device}, {tiles} tile(s), "
            f"{warmup} warm-up + {repeats} runs")
        per_stage: dict[str, list[float]] = {k: [] for k in STAGES}
        probs: torch.Tensor | None = None
        for i in range(warmup + repeats):
            probs = None
            clock = StageClock(device)
            start = clock.sync()
            probs = ins.probabilities(image, None, clock)
            t = clock.sync()
            cam = ins.postprocess("cam0", probs, 0.05)
            t = clock.add("postprocess", t)
            judge([cam], ins.rules)
            end = clock.add("verdict", t)
            clock.times_ms["total"] = (end - start) * 1000
            if i >= warmup:
                for k in STAGES:
                    per_stage[k].append(clock.times_ms.get(k, 0.0))
            say(f"  run {i + 1}/{warmup + repeats}: {clock.times_ms['total']:.1f} ms"
                + (" (warm-up)" if i < warmup else ""))
        assert probs is not None
        run.stages_ms = {k: round(percentile(v, 50), 3) for k, v in per_stage.items()}
        run.stages_p99_ms = {k: round(percentile(v, 99), 3) for k, v in per_stage.items()}
        run.runs_ms = [round(v, 3) for v in per_stage["total"]]
        if mode == "tiled":
            run.batch = ins.tiler.batch_for(tiles, ins.segmenter, ins.spec.in_channels, device,
                                            ins.segmenter.dtype)
            run.graphs = bool(ins.tiler._graph_cache)
        if shared["pristine"] is not None and shared["ref"] is None:
            say(f"{name}: naive reference (host tiling, one tile at a time, fp32) ...")
            shared["ref"], shared["naive_ms"] = _naive(shared["pristine"], ckpt, image.pixels,
                                                       s, device)
        if shared["ref"] is not None:
            run.naive_ms = shared["naive_ms"]
            run.speedup = round(shared["naive_ms"] / run.stages_ms["total"], 3)
            d_all, d_in, cls = _agreement(probs, shared["ref"], ins)
            run.max_abs_diff, run.max_abs_diff_interior = d_all, d_in
            run.class_disagreement = cls
        if mode == "whole" and "tiled" in shared["probs"]:
            d_all, d_in, cls = _agreement(probs, shared["probs"]["tiled"], ins)
            run.vs_tiled = {"max_abs_diff": d_all, "max_abs_diff_interior": d_in,
                            "class_disagreement": cls}
        shared["probs"][mode] = probs
        del probs
    say(f"{name} {mode}: worst-case post-processing ({', '.join(NOISE_KINDS)}) ...")
    run.worst_case = measure_worst_case(ins, height, width, max(repeats, 3), 1, s.seed)
    if not s.only_noise and "locate" not in shared:
        shared["locate"] = run.locate_ms = measure_locate(ins, image, max(repeats, 3), say)
    return run


def measure_locate(ins: Inspector, image: Any, repeats: int, say: Say = _quiet
                   ) -> dict[str, float] | None:
    """What the image head's box costs a part its rule failed (:mod:`pipeline.locate`): the
    frame preprocessed again, one encoder pass of the whole frame, the head's cells, the hot
    spot; median and p99 over ``repeats`` runs after one warm-up. None without a head."""
    from pipeline.locate import has_head_cells
    from pipeline.tiling import StageClock

    if not has_head_cells(ins.segmenter.model):
        return None
    height, width = image.pixels.shape[:2]
    say(f"image head box on {width} x {height}: 1 warm-up + {repeats} runs")
    clock = StageClock(ins.device)
    times = []
    for i in range(repeats + 1):
        t0 = clock.sync()
        ins.head_box(image)
        if i:
            times.append((clock.sync() - t0) * 1000)
    return {"median": round(percentile(times, 50), 3), "p99": round(percentile(times, 99), 3)}


def _naive(model: torch.nn.Module, ckpt: Checkpoint, frame: npt.NDArray[np.uint8],
           s: BenchSettings, device: torch.device) -> tuple[torch.Tensor, float]:
    import torch

    model = model.eval().to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    ref = naive_reference(model, frame, ckpt.meta.normalisation.mean,
                          ckpt.meta.normalisation.std, s.tile_size, s.overlap, device,
                          ckpt.meta.spec.head)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    took = round((time.perf_counter() - t0) * 1000, 3)
    model.to("cpu")
    return torch.from_numpy(ref)[None].to(device), took
