"""``station bench [--encoder NAME] [--device cuda|cpu] [--repeats N] [--json FILE]``.

One synthetic BayerRG8 frame (5472 x 3648 on CUDA; 1368 x 912 on the CPU unless ``--size``)
through every pipeline stage, median per stage over the repeats, device-synchronised; then the
same frame through the naive reference loop; speed-up and output agreement. The harness lives
in ``bench/pipeline_bench.py`` (a source checkout; it is not installed with the package).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType

from config.errors import StationError


def _harness() -> ModuleType:
    try:
        return importlib.import_module("bench.pipeline_bench")
    except ImportError:
        root = Path(__file__).resolve().parents[2]
        if not (root / "bench" / "pipeline_bench.py").is_file():
            raise StationError(
                "station bench needs a source checkout (bench/pipeline_bench.py is not "
                "installed with the package)"
            ) from None
        sys.path.insert(0, str(root))
        return importlib.import_module("bench.pipeline_bench")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station bench``."""
    p = sub.add_parser(
        "bench", help="time every pipeline stage on a synthetic 20 MP frame",
        description="Time every pipeline stage on one synthetic BayerRG8 frame (median of "
        "repeats, device-synchronised), compare with a naive host-tiling fp32 loop, and report "
        "the speed-up and the largest output difference.",
    )
    _harness().add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the bench."""
    from station.logs import setup_logging

    setup_logging("warning", "console")
    code: int = _harness().run_cli(args)
    return code
