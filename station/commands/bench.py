"""``station bench [--encoder NAME] [--device cuda|cpu] [--repeats N] [--json FILE]``.

One synthetic BayerRG8 frame (5472 x 3648 on CUDA; 1368 x 912 on the CPU unless ``--size``)
through every pipeline stage, median per stage over the repeats, device-synchronised; then the
same frame through the naive reference loop; speed-up and output agreement. The harness is
``station/bench.py`` (``python -m bench.pipeline_bench`` runs it from a source checkout).
"""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType


def _harness() -> ModuleType:
    return importlib.import_module("station.bench")  # imports torch: only when it runs


#: The reference camera's frame.
FULL_SIZE = (5472, 3648)
#: Default frame on the CPU: a quarter of the width and height (1/16 of the pixels).
CPU_SIZE = (1368, 912)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The bench's options (shared with ``python -m bench.pipeline_bench``)."""
    p.add_argument("--encoder", metavar="NAME",
                   help="a random-weight smp Unet with this encoder instead of a checkpoint "
                   "(e.g. efficientnet-b0, efficientnet-b7, tu-efficientnet_lite0)")
    p.add_argument("--model", metavar="CKPT", default="default",
                   help="checkpoint to run (default: the shipped model)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="where to run (default auto: CUDA when present)")
    p.add_argument("--size", metavar="WxH",
                   help=f"frame size (default {FULL_SIZE[0]}x{FULL_SIZE[1]} on CUDA, "
                   f"{CPU_SIZE[0]}x{CPU_SIZE[1]} on the CPU)")
    p.add_argument("--repeats", type=int, metavar="N",
                   help="measured runs (default 5 on CUDA, 1 on the CPU)")
    p.add_argument("--warmup", type=int, metavar="N",
                   help="unmeasured runs first (default 1)")
    p.add_argument("--tile-size", type=int, default=384, metavar="PX",
                   help="tile edge (default 384 px)")
    p.add_argument("--overlap", type=float, default=0.25,
                   help="tile overlap, a fraction of the tile (default 0.25)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N",
                   help="tiles per forward pass (default 8)")
    p.add_argument("--mode", choices=("tiled", "whole"), default="tiled",
                   help="tiles with overlap, or the whole frame at once (default tiled)")
    p.add_argument("--no-half", action="store_true", help="float32 on CUDA too")
    p.add_argument("--no-naive", action="store_true", help="skip the naive reference")
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station bench`` (the harness is imported only when it runs)."""
    p = sub.add_parser(
        "bench", help="time every pipeline stage on a synthetic 20 MP frame",
        description="Time every pipeline stage on one synthetic BayerRG8 frame (median of "
        "repeats, device-synchronised), compare with a naive host-tiling fp32 loop, and report "
        "the speed-up and the largest output difference.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the bench."""
    from station.logs import setup_logging

    setup_logging("warning", "console")
    code: int = _harness().run_cli(args)
    return code
