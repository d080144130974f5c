"""``station lightsim``: the luminaire controller simulator on a pseudo-terminal.

Prints the device path (first line of stdout), serves until SIGINT/SIGTERM. Faults can be
injected from the start (``--fault``, optionally ``--fault-after`` N requests) and toggled
while it runs: SIGUSR1 switches to the ``--toggle`` fault (default ``port_closed``: the port
vanishes), SIGUSR2 back to ``none`` (with ``port_closed``, the port comes back at the
``--link`` path, so a driver configured with that path recovers).
"""

from __future__ import annotations

import argparse
import queue
import signal
from types import FrameType

from drivers.lights.simulator import FAULTS
from station.commands._common import in_range


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station lightsim``."""
    parser = sub.add_parser(
        "lightsim", help="run the luminaire controller simulator on a pseudo-terminal",
        description="Serve docs/lighting-protocol.md on a new pseudo-terminal; print its "
        "path; serve until SIGINT/SIGTERM. SIGUSR1 injects the --toggle fault, SIGUSR2 "
        "clears it.",
    )
    parser.add_argument("--pty", action="store_true", default=True,
                        help="serve on a new pseudo-terminal (the default and only transport)")
    parser.add_argument("--link", metavar="PATH",
                        help="also make PATH a symlink to the pty (stable across port_closed "
                        "and back); printed instead of the pty")
    parser.add_argument("--channels", type=in_range(int, 1, 99, "channel count"), default=4,
                        metavar="N", help="channels fitted, 1..99 (default 4)")
    parser.add_argument("--fault", choices=FAULTS, default="none",
                        help="fault injected from the start (default none)")
    parser.add_argument("--fault-code", type=in_range(int, 0, 99, "NG error number"), default=6,
                        metavar="NN", help="error number sent with --fault ng (default 06)")
    parser.add_argument("--fault-after", type=in_range(int, 0, 1_000_000, "request count"),
                        default=0, metavar="N", help="serve N requests normally before the fault")
    parser.add_argument("--toggle", choices=[f for f in FAULTS if f != "none"],
                        default="port_closed", help="fault SIGUSR1 injects (default port_closed)")
    parser.add_argument("--reply-delay-ms", type=in_range(int, 0, 10_000, "reply delay"),
                        default=0, metavar="MS", help="wait this long before every reply [ms]")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start the simulator, print its path, serve until a signal."""
    from drivers.lights import LightSimulator
    from station.logs import setup_logging

    setup_logging("info", "auto")
    sim = LightSimulator(channels=args.channels, link=args.link,
                         reply_delay_s=args.reply_delay_ms / 1000.0)
    actions: queue.SimpleQueue[str] = queue.SimpleQueue()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        kinds = {int(signal.SIGUSR1): "inject", int(signal.SIGUSR2): "clear"}
        actions.put(kinds.get(signum, "stop"))

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
    previous = {s: signal.signal(s, on_signal) for s in signals}
    try:
        path = sim.start()
        if args.fault != "none" or args.fault_after:
            sim.set_fault(args.fault, code=args.fault_code, after=args.fault_after)
        print(path, flush=True)
        while True:
            try:
                action = actions.get(timeout=0.5)
            except queue.Empty:
                continue
            if action == "stop":
                break
            sim.set_fault(args.toggle if action == "inject" else "none", code=args.fault_code)
    finally:
        sim.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0
