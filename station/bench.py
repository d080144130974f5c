"""The pipeline bench: one synthetic BayerRG8 frame through every stage, against a naive loop.

``python -m bench.pipeline_bench --help`` or ``station bench``. The optimised path is the
station's own (:class:`pipeline.Inspector` stages, device-synchronised per stage, median of
``repeats`` after ``warmup`` runs). The naive reference is the seed paper's loop: demosaic and
normalise on the host (OpenCV/numpy), cut tiles on the host, send one tile at a time to the
device in float32, bring every output back and blend on the host with the same window. Both
run the same weights on the same frame in the same process; the bench reports the speed ratio
and how far apart the two outputs are (max |Δp| over all class probabilities, and the share of
pixels whose class differs).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch

from config.pipeline import PipelineConfig
from config.rules import RulesConfig
from models.build import ModelSpec, build_model, count_parameters
from models.checkpoint import Checkpoint, load_checkpoint, make_meta
from models.runtime import split_outputs
from pipeline.inspector import Inspector
from pipeline.postprocess import classify, defect_probabilities
from pipeline.tiling import StageClock, plan_tiles, window_1d
from pipeline.types import InputImage
from pipeline.verdict import judge
from station.commands.bench import CPU_SIZE, FULL_SIZE, add_arguments

CLASSES = ["background", "Blowhole", "Break", "Crack", "Fray", "Uneven"]
#: OpenCV fills the outermost demosaiced row/column differently; its effect reaches this far
#: into the network's output, so the difference is also reported without this margin [px].
INTERIOR_MARGIN = 64
STAGES = ("preprocess", "tile", "infer", "blend", "postprocess", "verdict", "total")


@dataclass
class BenchSettings:
    """What to measure."""

    encoder: str | None = None  # None: the checkpoint (default: the shipped model)
    checkpoint: str = "default"
    device: str = "auto"
    width: int | None = None
    height: int | None = None
    repeats: int | None = None
    warmup: int | None = None
    tile_size: int = 384
    overlap: float = 0.25
    batch_size: int = 8
    half: bool = True
    mode: str = "tiled"
    naive: bool = True
    seed: int = 0


@dataclass
class BenchResult:
    """Figures of one bench run (times in ms)."""

    settings: dict[str, Any]
    device: str
    model: dict[str, Any]
    frame: dict[str, Any]
    tiles: int
    stages_ms: dict[str, float]
    runs_ms: list[float]
    naive_ms: float | None = None
    speedup: float | None = None
    max_abs_diff: float | None = None
    max_abs_diff_interior: float | None = None
    class_disagreement: float | None = None
    environment: dict[str, str] = field(default_factory=dict)


def synthetic_frame(height: int, width: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    """A BayerRG8 mosaic of a shaded, textured tile with a few bright spots and a dark scratch."""
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


def _checkpoint(s: BenchSettings) -> Checkpoint:
    if s.encoder is None:
        return load_checkpoint(s.checkpoint if s.checkpoint != "default" else
                               Path(__file__).resolve().parents[1] / "models" / "default"
                               / "model.ckpt")
    torch.manual_seed(s.seed)
    spec = ModelSpec(architecture="unet", encoder=s.encoder, in_channels=3, classes=CLASSES)
    model = build_model(spec).eval()
    meta = make_meta(name=f"bench-unet-{s.encoder}", spec=spec, state_dict=model.state_dict())
    return Checkpoint(meta=meta, model=model)


def naive_reference(
    model: torch.nn.Module, frame: npt.NDArray[np.uint8], mean: Sequence[float],
    std: Sequence[float], tile: int, overlap: float, device: torch.device, head: str,
) -> npt.NDArray[np.float32]:
    """The seed-style loop; returns class probabilities ``(C, H, W)`` on the host."""
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


def run_bench(s: BenchSettings, log: Any = None) -> BenchResult:
    """Measure; ``log`` (a callable taking a string) hears about progress."""
    say = log or (lambda _msg: None)
    cuda = s.device == "cuda" or (s.device == "auto" and torch.cuda.is_available())
    width, height = (s.width, s.height) if s.width and s.height else (
        FULL_SIZE if cuda else CPU_SIZE)
    repeats = s.repeats if s.repeats is not None else (5 if cuda else 1)
    warmup = s.warmup if s.warmup is not None else 1
    ckpt = _checkpoint(s)
    naive_model = copy.deepcopy(ckpt.model).float().eval() if s.naive else None
    pcfg = PipelineConfig.model_validate({
        "device": s.device, "tile_size": s.tile_size, "overlap": s.overlap,
        "batch_size": s.batch_size, "half": s.half, "mode": s.mode, "max_defects": 100_000,
    })
    rules = RulesConfig.model_validate({})
    ins = Inspector(ckpt, pipeline=pcfg, rules=rules)
    device = ins.device
    frame = synthetic_frame(height, width, s.seed)
    image = InputImage("cam0", frame, "BayerRG8")
    grid = plan_tiles(height, width, s.tile_size, s.overlap)
    tiles = 1 if s.mode == "whole" else len(grid.origins)
    say(f"{width} x {height} BayerRG8 on {device}, {tiles} tiles, "
        f"{warmup} warm-up + {repeats} runs")
    per_stage: dict[str, list[float]] = {k: [] for k in STAGES}
    probs: torch.Tensor | None = None
    for i in range(warmup + repeats):
        clock = StageClock(device)
        start = clock.sync()
        probs = ins.probabilities(image, None, clock)
        t = clock.sync()
        cam = ins.postprocess("cam0", probs, 0.05)
        t = clock.add("postprocess", t)
        judge([cam], rules)
        end = clock.add("verdict", t)
        clock.times_ms["total"] = (end - start) * 1000
        if i >= warmup:
            for k in STAGES:
                per_stage[k].append(clock.times_ms.get(k, 0.0))
        say(f"run {i + 1}/{warmup + repeats}: {clock.times_ms['total']:.0f} ms"
            + (" (warm-up)" if i < warmup else ""))
    assert probs is not None
    result = BenchResult(
        settings=asdict(s), device=str(device),
        model={**{k: v for k, v in ins.model_info.items()
                  if k in ("model_id", "architecture", "encoder", "dtype", "trained")},
               "parameters": count_parameters(ckpt.model)},
        frame={"width": width, "height": height, "pixel_format": "BayerRG8"},
        tiles=tiles,
        stages_ms={k: round(statistics.median(v), 3) for k, v in per_stage.items()},
        runs_ms=[round(v, 3) for v in per_stage["total"]],
        environment={"torch": torch.__version__, "python": platform.python_version(),
                     "cpu_threads": str(torch.get_num_threads()),
                     "gpu": torch.cuda.get_device_name(device) if cuda else "-"},
    )
    if naive_model is not None:
        say("naive reference (host tiling, one tile at a time, fp32) ...")
        naive_model.to(device)
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        ref = naive_reference(naive_model, frame, ckpt.meta.normalisation.mean,
                              ckpt.meta.normalisation.std, s.tile_size, s.overlap, device,
                              ckpt.meta.spec.head)
        if cuda:
            torch.cuda.synchronize(device)
        result.naive_ms = round((time.perf_counter() - t0) * 1000, 3)
        result.speedup = round(result.naive_ms / result.stages_ms["total"], 3)
        ours = probs[0].cpu().numpy()
        diff = np.abs(ours - ref).max(axis=0)
        result.max_abs_diff = float(diff.max())
        m = INTERIOR_MARGIN
        inner = diff[m:-m, m:-m]
        result.max_abs_diff_interior = float(inner.max()) if inner.size else None
        thr = ins._thresholds_t.cpu()
        head = ckpt.meta.spec.head
        la, _ = classify(defect_probabilities(probs.cpu(), head), thr)
        lb, _ = classify(defect_probabilities(torch.from_numpy(ref)[None], head), thr)
        result.class_disagreement = float((la != lb).float().mean())
    return result


def format_table(r: BenchResult) -> str:
    """The result as a fixed-width table."""
    lines = [
        f"frame      {r.frame['width']} x {r.frame['height']} {r.frame['pixel_format']}, "
        f"{r.tiles} tile(s) of {r.settings['tile_size']} px, overlap {r.settings['overlap']}, "
        f"batch {r.settings['batch_size']}, mode {r.settings['mode']}",
        f"model      {r.model['model_id']} ({r.model['architecture']}/{r.model['encoder']}, "
        f"{r.model['parameters'] / 1e6:.2f} M params, {r.model['dtype']})",
        f"device     {r.device} ({r.environment.get('gpu', '-')}), torch "
        f"{r.environment.get('torch')}, {len(r.runs_ms)} run(s), median:",
        "",
        f"{'stage':<12}{'ms':>12}",
    ]
    lines += [f"{k:<12}{v:>12.1f}" for k, v in r.stages_ms.items()]
    if r.naive_ms is not None:
        lines += [
            "",
            f"{'naive loop':<12}{r.naive_ms:>12.1f}   (host tiling, 1 tile at a time, fp32)",
            f"{'speed-up':<12}{r.speedup:>12.2f}x",
            f"{'max |dp|':<12}{r.max_abs_diff:>12.2e}   (class probabilities, all pixels)",
            f"{'  interior':<12}{(r.max_abs_diff_interior or 0.0):>12.2e}   (>= "
            f"{INTERIOR_MARGIN} px from the frame border)",
            f"{'class diff':<12}{r.class_disagreement:>12.2e}   (share of pixels whose class "
            "differs)",
        ]
    return "\n".join(lines)


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    """Parsed options -> :class:`BenchSettings`."""
    width = height = None
    if args.size:
        try:
            w, h = args.size.lower().split("x")
            width, height = int(w), int(h)
        except ValueError:
            raise SystemExit(f"--size must look like 5472x3648, got {args.size!r}") from None
    return BenchSettings(
        encoder=args.encoder, checkpoint=args.model, device=args.device, width=width,
        height=height, repeats=args.repeats, warmup=args.warmup, tile_size=args.tile_size,
        overlap=args.overlap, batch_size=args.batch_size, half=not args.no_half,
        mode=args.mode, naive=not args.no_naive,
    )


def run_cli(args: argparse.Namespace) -> int:
    """Run, print the table, write JSON if asked."""
    result = run_bench(settings_from_args(args), log=lambda m: print(m, file=sys.stderr))
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(result), indent=2) + "\n")
        print(f"JSON written to {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.pipeline_bench``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
