"""The bench's command line and its printed tables: options -> settings -> the pipeline bench
(:mod:`station.bench`) or the end-to-end bench (:mod:`station.bench_e2e`) -> tables and JSON.

``station bench`` (:mod:`station.commands.bench`) and ``python -m bench.pipeline_bench`` run
:func:`main_args`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from station.bench import (
    CHECKPOINT_MODEL,
    CPU_SIZE,
    FULL_SIZE,
    INTERIOR_MARGIN,
    BenchReport,
    BenchSettings,
    RunResult,
    environment,
    run_bench,
)
from station.bench_e2e import E2ESettings, format_e2e, run_e2e


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
    if r.locate_ms:
        lines.append(f"{'head box':<14}{_ms(r.locate_ms['median']):>12}"
                     f"{_ms(r.locate_ms['p99']):>12}   (parts the image head fails only: "
                     "one more encoder pass of the frame)")
    return "\n".join(lines)


def format_report(r: BenchReport) -> str:
    """Everything, runs one after the other."""

    env = r.environment
    head = (f"device     {env['device']} ({env['gpu']}), torch {env['torch']}, "
            f"commit {env['git_commit']}")
    blocks = [head] + [format_run(run, r.settings) for run in r.runs]
    if r.e2e:
        blocks.append(format_e2e(r.e2e))
    return "\n\n".join(blocks)


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
    """Parsed options -> :class:`station.bench_e2e.E2ESettings`."""

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
