"""``station lights``: manual control of the luminaires, for commissioning.

``on`` keeps the lights on until Ctrl-C / SIGTERM, ``--for`` seconds or the max on-time guard
(``lights.max_on_s``), then switches them off: a luminaire never stays on after the command.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

from station.commands._common import add_config_options, config_from_args, in_range

if TYPE_CHECKING:
    from drivers.lights import LightController


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station lights``."""
    parser = sub.add_parser(
        "lights", help="switch the luminaires by hand (commissioning)",
        description="Talk to the luminaire controller the config names. 'on' holds the lights "
        "on until Ctrl-C, --for seconds or lights.max_on_s, then switches them off.",
    )
    add_config_options(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    on = actions.add_parser("on", help="every configured channel on at its intensity, held")
    on.add_argument("--for", dest="hold_s", metavar="SECONDS",
                    type=in_range(float, 0.0, 3600.0, "duration", unit="s", low_open=True),
                    help="switch off after this long (default and upper bound: lights.max_on_s)")
    actions.add_parser("off", help="every channel off")
    actions.add_parser("status", help="connection and every configured channel's state")
    set_p = actions.add_parser("set", help="set one channel's intensity (does not switch on)")
    set_p.add_argument("channel", type=in_range(int, 1, 99, "channel"), metavar="CH",
                       help="channel 1..99")
    set_p.add_argument("value", type=in_range(int, 0, 255, "intensity"), metavar="VALUE",
                       help="intensity 0..255")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Open the controller, do the action, switch off and close."""
    from drivers.lights import open_lights
    from station.logs import setup_logging

    cfg = config_from_args(args)
    setup_logging(cfg.logging.level, cfg.logging.format)
    lights = open_lights(cfg.lights)
    try:
        lights.open()
        if args.action == "on":
            return _hold_on(lights, min(args.hold_s or cfg.lights.max_on_s, cfg.lights.max_on_s))
        if args.action == "off":
            lights.off()
            print("lights off")
        elif args.action == "set":
            lights.set_intensity(args.channel, args.value)
            print(f"channel {args.channel:02d} intensity {args.value}")
        else:
            _print_status(lights, [(c.channel, c.name) for c in cfg.lights.channels])
        return 0
    finally:
        lights.close()


def _hold_on(lights: LightController, hold_s: float) -> int:
    """Lights on; wait for a signal, the hold time or the guard; the caller closes (off)."""
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        lights.on()
        print(f"lights on; off after {hold_s:g} s or on Ctrl-C", flush=True)
        deadline = time.monotonic() + hold_s
        while not stop.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline or not lights.health().lit:
                break
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print("lights off")
    return 0


def _print_status(ctl: LightController, channels: list[tuple[int, str]]) -> None:
    """Health, then one line per configured channel as the controller reports it."""
    h = ctl.health()
    state = "connected" if h.connected else "NOT connected"
    print(f"backend {h.backend}: {state}; {h.detail}; errors {h.errors}, reopens {h.reopens}")
    if h.backend == "none":
        return
    for number, name in channels:
        s = ctl.read_status(number)
        pulse = "continuous" if s.pulse_us == 0 else f"strobe {s.pulse_us} µs"
        print(f"channel {number:02d} {name}: intensity {s.intensity}, "
              f"{'on' if s.lit else 'off'}, {pulse}")
