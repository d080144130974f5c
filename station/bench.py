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

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    error: str | None = None


@dataclass
class BenchReport:
    """One invocation: where it ran, with what, and every run."""

    environment: dict[str, Any]
    settings: dict[str, Any]
    runs: list[RunResult] = field(default_factory=list)
    e2e: dict[str, Any] | None = None


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation; the maximum for q = 100)."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else 0.0


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
        "region_block": s.region_block, "mode": mode,
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
    return run


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


# -- end to end ------------------------------------------------------------------------------


@dataclass
class E2ESettings:
    """The daemon bench."""

    width: int = FULL_SIZE[0]
    height: int = FULL_SIZE[1]
    device: str = "auto"
    mode: str = "tiled"
    parts: int = 60
    duration_s: float = 20.0
    serial_parts: int = 20
    warmup_parts: int = 8
    ready_timeout_s: float = 300.0
    extra: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_e2e(s: E2ESettings, log: Say | None = None) -> dict[str, Any]:
    """Start ``station run`` with two replay cameras, drive it, stop it; the figures."""
    import zmq

    from station.messaging.client import NoAnswer, request

    say = log or _quiet
    command = f"tcp://127.0.0.1:{_free_port()}"
    publish = f"tcp://127.0.0.1:{_free_port()}"
    sets = [
        f"messaging.command={command}", f"messaging.publish={publish}",
        "messaging.status_interval_s=0.2", f"pipeline.device={s.device}",
        f"pipeline.mode={s.mode}", "logging.level=warning",
    ]
    for cam in (0, 1):
        sets += [f"cameras.{cam}.replay.pixel_format=BayerRG8",
                 f"cameras.{cam}.replay.width={s.width}",
                 f"cameras.{cam}.replay.height={s.height}",
                 f"cameras.{cam}.replay.cache_mb=1024"]
    sets += s.extra
    with tempfile.TemporaryDirectory(prefix="station-e2e-") as tmp:
        log_path = Path(tmp) / "station.log"
        args = [sys.executable, "-m", "station.cli", "run", "--config", "default",
                "--data-dir", str(Path(tmp) / "data")]
        for item in sets:
            args += ["--set", item]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("STATION_CONFIG", None)
        say(f"e2e: starting station run ({s.width} x {s.height} BayerRG8 x 2 cameras, "
            f"{s.device}, {s.mode})")
        t_start = time.monotonic()
        with log_path.open("wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)

        def tail() -> str:
            return log_path.read_text(errors="replace")[-4000:]

        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        try:
            deadline = time.monotonic() + s.ready_timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"station run exited with {proc.returncode}:\n{tail()}")
                try:
                    request(command, {"command": "ping"}, timeout_s=0.5)
                    break
                except NoAnswer:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"station run not up within {s.ready_timeout_s} s:\n{tail()}"
                        ) from None
            ready_s = time.monotonic() - t_start
            for topic in (b"verdict", b"status"):
                sub.setsockopt(zmq.SUBSCRIBE, topic)
            sub.connect(publish)
            _await(sub, "status", 30.0)  # the subscription is live (slow joiner)
            say(f"e2e: up after {ready_s:.1f} s; {s.warmup_parts} warm-up part(s) "
                "(decode and cache every sample) ...")
            _serial(command, sub, "W", s.warmup_parts, 600.0)
            say(f"e2e: throughput, up to {s.parts} part(s) or {s.duration_s:g} s ...")
            burst = _burst(command, sub, s.parts, s.duration_s)
            say(f"e2e: {burst['parts_per_s']:.2f} parts/s; latency one part at a time "
                f"({s.serial_parts} part(s)) ...")
            serial = _serial(command, sub, "S", s.serial_parts, 600.0)
            status = request(command, {"command": "status"}, timeout_s=5.0)
        finally:
            sub.close()
            code = None
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    code = proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
            else:
                code = proc.returncode
    return {
        "frame": {"width": s.width, "height": s.height, "pixel_format": "BayerRG8",
                  "cameras": 2},
        "device": s.device, "mode": s.mode, "ready_s": round(ready_s, 2),
        "throughput": burst, "serial": serial,
        "model": (status.get("result") or {}).get("model"),
        "exit_code": code,
    }


def _await(sub: Any, topic: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sub.poll(100):
            parts = sub.recv_multipart()
            if parts[0].decode() == topic:
                header: dict[str, Any] = json.loads(parts[1])
                return header
    raise RuntimeError(f"no {topic} message within {timeout_s} s")


def _verdict(sub: Any, timeout_ms: int) -> dict[str, Any] | None:
    if not sub.poll(timeout_ms):
        return None
    parts = sub.recv_multipart()
    if parts[0] != b"verdict":
        return None
    header: dict[str, Any] = json.loads(parts[1])
    return header


def _trigger(command: str, part_id: str) -> tuple[bool, str]:
    from station.messaging.client import request

    reply = request(command, {"command": "inspect", "part_id": part_id}, timeout_s=10.0)
    if reply.get("ok"):
        return True, ""
    return False, str((reply.get("error") or {}).get("code"))


def _summary(latencies: list[float], cycles: list[float], verdicts: list[str]) -> dict[str, Any]:
    return {
        "latency_ms": {"p50": round(percentile(latencies, 50), 1),
                       "p99": round(percentile(latencies, 99), 1),
                       "max": round(max(latencies), 1) if latencies else None},
        "cycle_ms": {"p50": round(percentile(cycles, 50), 1),
                     "p99": round(percentile(cycles, 99), 1)},
        "verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))},
        "latencies_ms": [round(v, 1) for v in latencies],
    }


def _stage_medians(headers: list[dict[str, Any]]) -> dict[str, float]:
    keys = sorted({k for h in headers for k in h.get("timings_ms", {})})
    return {k: round(percentile([h["timings_ms"][k] for h in headers
                                 if k in h.get("timings_ms", {})], 50), 1) for k in keys}


def _serial(command: str, sub: Any, prefix: str, n: int, timeout_s: float) -> dict[str, Any]:
    """``n`` parts one at a time: trigger, wait for its verdict."""
    latencies, cycles, verdicts, headers = [], [], [], []
    lost = 0
    for i in range(n):
        part = f"{prefix}{i:05d}"
        t0 = time.monotonic()
        ok, code = _trigger(command, part)
        while not ok:  # BUSY: earlier parts still queued
            if code != "BUSY":
                raise RuntimeError(f"inspect refused with {code}")
            time.sleep(0.005)
            ok, code = _trigger(command, part)
        deadline = t0 + timeout_s
        while True:
            h = _verdict(sub, 200)
            if h is not None and h.get("part_id") == part:
                latencies.append((time.monotonic() - t0) * 1000)
                cycles.append(float(h["duration_ms"]))
                verdicts.append(h["verdict"])
                headers.append(h)
                break
            if time.monotonic() > deadline:
                lost += 1
                break
    return {"parts": n, "lost": lost, **_summary(latencies, cycles, verdicts),
            "stages_ms": _stage_medians(headers)}


def _burst(command: str, sub: Any, n: int, duration_s: float) -> dict[str, Any]:
    """Trigger parts as fast as the queue takes them (a BUSY answer waits for the next
    verdict); every accepted part must get exactly one verdict, in trigger order."""
    sent: dict[str, float] = {}
    order: list[str] = []
    got: list[str] = []
    latencies, cycles, verdicts, headers = [], [], [], []
    busy = 0
    i = 0
    t0 = time.monotonic()
    stop_at = t0 + duration_s

    def take(h: dict[str, Any] | None) -> None:
        if h is None:
            return
        part = h.get("part_id")
        if part in sent and part not in got:
            got.append(part)
            latencies.append((time.monotonic() - sent[part]) * 1000)
            cycles.append(float(h["duration_ms"]))
            verdicts.append(h["verdict"])
            headers.append(h)

    while i < n and time.monotonic() < stop_at:
        part = f"B{i:05d}"
        t = time.monotonic()
        ok, code = _trigger(command, part)
        if ok:
            sent[part] = t
            order.append(part)
            i += 1
            take(_verdict(sub, 0))
        elif code == "BUSY":
            busy += 1
            take(_verdict(sub, 50))
        else:
            raise RuntimeError(f"inspect refused with {code}")
    deadline = time.monotonic() + 120.0
    while len(got) < len(order) and time.monotonic() < deadline:
        take(_verdict(sub, 200))
    elapsed = time.monotonic() - t0
    lost = [p for p in order if p not in got]
    reordered = sum(1 for a, b in zip(got, [p for p in order if p in got], strict=True)
                    if a != b)
    return {
        "parts": len(order), "seconds": round(elapsed, 3),
        "parts_per_s": round(len(got) / elapsed, 3) if elapsed > 0 else 0.0,
        "busy_answers": busy, "lost": len(lost), "reordered": reordered,
        **_summary(latencies, cycles, verdicts), "stages_ms": _stage_medians(headers),
    }


# -- output ----------------------------------------------------------------------------------


def _ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:.1f}" if v >= 1 else f"{v:.3f}")


def format_run(r: RunResult, settings: dict[str, Any]) -> str:
    """One run as a fixed-width table."""
    if r.error:
        return f"model      {r.model.get('name')}, mode {r.mode}: FAILED: {r.error}"
    lines = [
        f"model      {r.model['name']}: {r.model['model_id']} ({r.model['architecture']}/"
        f"{r.model['encoder']}, {r.model['parameters'] / 1e6:.2f} M params, "
        f"{r.model['dtype']}), mode {r.mode}",
        f"frame      {r.frame['width']} x {r.frame['height']} {r.frame['pixel_format']}, "
        f"{r.tiles} tile(s) of {settings['tile_size']} px, overlap {settings['overlap']}"
        + (f", batch {r.batch}" if r.batch else "") + (", CUDA graph" if r.graphs else ""),
    ]
    if r.runs_ms:
        lines += ["", f"{'stage':<14}{'median ms':>12}{'p99 ms':>12}"]
        lines += [f"{k:<14}{_ms(v):>12}{_ms(r.stages_p99_ms.get(k)):>12}"
                  for k, v in r.stages_ms.items()]
    if r.naive_ms is not None:
        lines += [
            "",
            f"{'naive loop':<14}{_ms(r.naive_ms):>12}   (host tiling, 1 tile at a time, fp32)",
            f"{'speed-up':<14}{(r.speedup or 0):>11.2f}x",
        ]
    if r.max_abs_diff is not None:
        lines += [
            f"{'max |dp|':<14}{r.max_abs_diff:>12.2e}   (vs naive, all pixels)",
            f"{'  interior':<14}{(r.max_abs_diff_interior or 0.0):>12.2e}   (>= "
            f"{INTERIOR_MARGIN} px from the frame border)",
            f"{'class diff':<14}{(r.class_disagreement or 0.0):>12.2e}   (share of pixels "
            "whose class differs)",
        ]
    if r.vs_tiled:
        lines += [f"{'vs tiled':<14}{r.vs_tiled['max_abs_diff']:>12.2e}   max |dp|; class "
                  f"diff {r.vs_tiled['class_disagreement']:.2e}"]
    for kind, w in r.worst_case.items():
        lines.append(
            f"{'worst ' + kind:<14}{_ms(w['postprocess_ms']):>12}{_ms(w['postprocess_p99_ms']):>12}"
            f"   post-processing; {w['regions']} region(s)"
            + (", capped" if w["capped"] else "")
        )
    return "\n".join(lines)


def format_e2e(e: dict[str, Any]) -> str:
    """The end-to-end figures."""
    b, s = e["throughput"], e["serial"]
    return "\n".join([
        f"e2e        station run, 2 replay cameras {e['frame']['width']} x "
        f"{e['frame']['height']} BayerRG8, {e['device']}, mode {e['mode']}, "
        f"ready after {e['ready_s']} s",
        f"throughput {b['parts_per_s']:.2f} parts/s over {b['parts']} part(s) "
        f"({b['seconds']} s); lost {b['lost']}, reordered {b['reordered']}, "
        f"BUSY answers {b['busy_answers']}",
        f"           latency p50 {b['latency_ms']['p50']} ms, p99 {b['latency_ms']['p99']} ms "
        f"(queueing included); cycle p50 {b['cycle_ms']['p50']} ms",
        f"one by one latency p50 {s['latency_ms']['p50']} ms, p99 {s['latency_ms']['p99']} ms; "
        f"cycle p50 {s['cycle_ms']['p50']} ms, p99 {s['cycle_ms']['p99']} ms; lost {s['lost']}",
        "stages     " + ", ".join(f"{k} {v}" for k, v in s["stages_ms"].items()),
        f"exit code  {e['exit_code']}",
    ])


def format_report(r: BenchReport) -> str:
    """Everything, runs one after the other."""
    env = r.environment
    head = (f"device     {env['device']} ({env['gpu']}), torch {env['torch']}, "
            f"commit {env['git_commit']}")
    blocks = [head] + [format_run(run, r.settings) for run in r.runs]
    if r.e2e:
        blocks.append(format_e2e(r.e2e))
    return "\n\n".join(blocks)


# -- command line ----------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise SystemExit(f"--size must look like 5472x3648, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The bench's options (``station bench`` and ``python -m bench.pipeline_bench``)."""
    p.add_argument("--encoder", metavar="NAME[,NAME...]",
                   help="models to run, comma-separated: 'default' (the --model checkpoint) or "
                   "an smp encoder for a random-weight Unet (e.g. efficientnet-b0, "
                   "efficientnet-b7, tu-efficientnet_lite0); default: the checkpoint only")
    p.add_argument("--model", metavar="CKPT", default="default",
                   help="checkpoint for 'default' (default: the shipped model)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="where to run (default auto: CUDA when present)")
    p.add_argument("--size", metavar="WxH",
                   help=f"frame size (default {FULL_SIZE[0]}x{FULL_SIZE[1]} on CUDA, "
                   f"{CPU_SIZE[0]}x{CPU_SIZE[1]} on the CPU)")
    p.add_argument("--repeats", type=int, metavar="N",
                   help="measured runs (default 10 on CUDA, 1 on the CPU)")
    p.add_argument("--warmup", type=int, metavar="N",
                   help="unmeasured runs first (default 1)")
    p.add_argument("--tile-size", type=int, default=384, metavar="PX",
                   help="tile edge (default 384 px)")
    p.add_argument("--overlap", type=float, default=0.25,
                   help="tile overlap, a fraction of the tile (default 0.25)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N",
                   help="tiles per pass on the CPU (default 8)")
    p.add_argument("--cuda-batch-size", type=int, default=0, metavar="N",
                   help="tiles per pass on CUDA (default 0: as many as fit)")
    p.add_argument("--mode", default="tiled", metavar="MODE[,MODE]",
                   help="tiled, whole, or both comma-separated (default tiled)")
    p.add_argument("--no-half", action="store_true", help="float32 on CUDA too")
    p.add_argument("--bf16", action="store_true", help="bfloat16 instead of float16 on CUDA")
    p.add_argument("--no-graphs", action="store_true", help="no CUDA graph for tile batches")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (compiled in the warm-up runs)")
    p.add_argument("--no-naive", action="store_true", help="skip the naive reference")
    p.add_argument("--region-block", type=int, default=4, metavar="PX",
                   help="pipeline.region_block: block edge of the region labelling (default 4)")
    p.add_argument("--only-noise", action="store_true",
                   help="only the worst-case post-processing (no network runs)")
    p.add_argument("--e2e", action="store_true",
                   help="end to end instead: station run with two replay cameras, driven "
                   "through the command socket")
    p.add_argument("--parts", type=int, default=60, metavar="N",
                   help="--e2e: most parts in the throughput phase (default 60)")
    p.add_argument("--duration", type=float, default=20.0, metavar="S",
                   help="--e2e: longest throughput phase (default 20 s)")
    p.add_argument("--serial-parts", type=int, default=20, metavar="N",
                   help="--e2e: parts triggered one at a time (default 20)")
    p.add_argument("--warmup-parts", type=int, default=8, metavar="N",
                   help="--e2e: parts before measuring (default 8: every sample once)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="--e2e: extra config override for station run (repeatable)")
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON")


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    """Parsed options -> :class:`BenchSettings`."""
    width = height = None
    if args.size:
        width, height = _size(args.size)
    modes = _names(args.mode.replace("both", "tiled,whole"))
    bad = [m for m in modes if m not in ("tiled", "whole")]
    if bad or not modes:
        raise SystemExit(f"--mode must be tiled, whole or both, got {args.mode!r}")
    return BenchSettings(
        models=_names(args.encoder) if args.encoder else [CHECKPOINT_MODEL],
        checkpoint=args.model, modes=modes, device=args.device, width=width, height=height,
        repeats=args.repeats, warmup=args.warmup, tile_size=args.tile_size,
        overlap=args.overlap, batch_size=args.batch_size,
        cuda_batch_size=args.cuda_batch_size, half=not args.no_half,
        half_dtype="bfloat16" if args.bf16 else "float16", graphs=not args.no_graphs,
        compile=args.compile, region_block=args.region_block,
        naive=not args.no_naive, only_noise=args.only_noise,
    )


def e2e_from_args(args: argparse.Namespace) -> E2ESettings:
    """Parsed options -> :class:`E2ESettings`."""
    w, h = _size(args.size) if args.size else FULL_SIZE
    mode = args.mode if args.mode in ("tiled", "whole") else "tiled"
    return E2ESettings(width=w, height=h, device=args.device, mode=mode, parts=args.parts,
                       duration_s=args.duration, serial_parts=args.serial_parts,
                       warmup_parts=args.warmup_parts, extra=list(args.overrides))


def main_args(args: argparse.Namespace) -> int:
    """Run what the options ask, print it, write JSON if asked."""
    def say(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    if args.e2e:
        import torch

        e2e = run_e2e(e2e_from_args(args), log=say)
        device = args.device if args.device != "auto" else (
            "cuda" if torch.cuda.is_available() else "cpu")
        report = BenchReport(environment=environment(device), settings=asdict(
            e2e_from_args(args)), e2e=e2e)
        print(format_e2e(e2e))
    else:
        report = run_bench(settings_from_args(args), log=say)
        print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=2) + "\n")
        print(f"JSON written to {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.pipeline_bench``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    return main_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
