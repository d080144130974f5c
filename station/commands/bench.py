"""``station bench``: time the pipeline (or the whole daemon) on synthetic 20 MP frames.

Pipeline mode: every stage of one synthetic BayerRG8 frame (5472 x 3648 on CUDA; 1368 x 912 on
the CPU unless ``--size``), median and p99 over the repeats, device-synchronised, for each model
of ``--encoder`` in each ``--mode``; the naive reference loop beside it (speed-up and output
agreement); the worst-case post-processing (noise and speck maps). ``--e2e``: ``station run``
with two replay cameras, driven through the command socket (parts/s, latency, lost, reordered).
The harness is ``station/bench.py`` (options and tables: ``station/bench_cli.py``); this
module only adds the subcommand.
"""

from __future__ import annotations

import argparse

from station import bench_cli as harness


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station bench`` (the harness imports torch only when it runs)."""
    p = sub.add_parser(
        "bench", help="time every pipeline stage (or the daemon) on synthetic 20 MP frames",
        description="Time every pipeline stage on synthetic BayerRG8 frames (median and p99 "
        "of repeats, device-synchronised) for one or more models and modes, compare with a "
        "naive host-tiling fp32 loop, time post-processing of worst-case maps; or, with "
        "--e2e, run the daemon with two replay cameras and measure parts/s and latency.",
    )
    harness.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the bench."""
    from station.logs import setup_logging

    setup_logging("warning", "console")
    return harness.main_args(args)
