"""``station capture``: set a booth up (``--calibrate``), collect frames, aim (``--preview``).

- ``station capture --calibrate [--camera NAME] [--steps exposure,focus,dark,flat,scale,lights]
  [--yes]``: the calibration steps per camera with the configured lights; each prints what it
  measured and PASS / FAIL / SKIP; a summary table at the end; the calibration is written
  (``<data dir>/calibration`` or ``calibration.path``) only when no step failed, and the exit
  code is 1 when one did. ``--yes`` runs unattended with the defaults (no terminal needed).
- ``station capture [--count N] [--out DIR] [--lights on|off]``: frames from every camera to
  lossless PNG (or TIFF) files with a JSON sidecar each, for building datasets.
- ``station capture --preview``: a downscaled live JPEG, rewritten in place, for aiming.

This module parses the arguments and dispatches: the calibration run is
``station.calibration.run``, its prompts ``station.terminal``, capture and preview
``station.capture``. See docs/calibration.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from config import StationConfig
from config.calibration import STEP_ORDER, StepName
from config.cameras import CameraConfig
from config.errors import ConfigError
from station.commands._common import (
    add_config_options,
    add_data_dir_option,
    config_from_args,
    data_dir,
    in_range,
)

MAX_COUNT = 100_000
MAX_PREVIEW_S = 3600.0


def _steps(text: str) -> list[StepName]:
    """argparse type: a comma-separated list of step names."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in STEP_ORDER]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"--steps {text!r}: unknown step(s) {', '.join(bad) or '(none given)'}; valid "
            f"steps: {','.join(STEP_ORDER)}"
        )
    return [s for s in STEP_ORDER if s in names]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station capture``."""
    parser = sub.add_parser(
        "capture", help="calibrate the booth (--calibrate), collect frames, preview (--preview)",
        description="Without a mode: grab --count frames from every camera into --out as "
        "lossless images with a JSON sidecar each. --calibrate: run the calibration steps and "
        "write a calibration the daemon loads. --preview: a live downscaled JPEG for aiming.",
    )
    add_config_options(parser)
    add_data_dir_option(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--calibrate", action="store_true",
                      help="run the calibration steps and write a calibration")
    mode.add_argument("--preview", action="store_true",
                      help="rewrite a downscaled live JPEG (--out, default <data dir>/preview.jpg)"
                      " until --duration or Ctrl-C")
    parser.add_argument("--camera", action="append", metavar="NAME",
                        help="only this camera (repeatable or comma-separated; default: all)")
    parser.add_argument("--steps", type=_steps, metavar="LIST",
                        help=f"calibration steps, comma-separated, from {','.join(STEP_ORDER)} "
                        "(default: calibration.steps of the config); they run in that order")
    parser.add_argument("--yes", "-y", action="store_true",
                        help="unattended: no prompts, defaults everywhere (no terminal needed)")
    parser.add_argument("--count", "-n", type=in_range(int, 1, MAX_COUNT), default=1, metavar="N",
                        help="frames per camera to capture (default 1)")
    parser.add_argument("--out", "-o", metavar="PATH",
                        help="capture: directory (default <data dir>/captures/<UTC time>); "
                        "preview: the JPEG file (default <data dir>/preview.jpg)")
    parser.add_argument("--lights", choices=["on", "off"], default="on",
                        help="lights during capture / preview (default on)")
    parser.add_argument("--format", choices=["png", "tiff"], default="png",
                        help="capture file format, both lossless (default png)")
    seconds = in_range(float, 0.0, MAX_PREVIEW_S, unit="s")
    parser.add_argument("--interval", type=seconds, default=None, metavar="S",
                        help="pause between captures (default 0) or preview updates (0.2) [s]")
    parser.add_argument("--duration", type=seconds, default=60.0, metavar="S",
                        help="preview: stop after this long (default 60, 0 = until Ctrl-C, "
                        f"at most {MAX_PREVIEW_S:g}) [s]")
    parser.add_argument("--width", type=in_range(int, 64, 8192, unit="px"), default=1024,
                        metavar="PX",
                        help="preview: width of the JPEG (default 1024) [px]")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to calibrate, preview or capture."""
    from station.calibration.run import calibrate
    from station.capture import capture, preview
    from station.logs import setup_logging
    from station.terminal import Console

    cfg = config_from_args(args)
    setup_logging(cfg.logging.level, cfg.logging.format)
    if not args.calibrate and (args.steps or args.yes):
        raise ConfigError("--steps and --yes belong to --calibrate; add --calibrate")
    cameras = select_cameras(cfg, args.camera or [])
    ddir = data_dir(args, cfg)
    if args.calibrate:
        interactive = not args.yes
        if interactive and not sys.stdin.isatty():
            raise ConfigError(
                "--calibrate: standard input is not a terminal, so nobody can answer the "
                "prompts; pass --yes to run unattended with the defaults"
            )
        console = Console(sys.stdout, interactive=interactive)
        return calibrate(cfg, ddir, cameras, args.steps, console)
    if args.preview:
        path = Path(args.out).expanduser() if args.out else ddir / "preview.jpg"
        interval = 0.2 if args.interval is None else args.interval
        return preview(cfg, cameras, path, lights_on=args.lights == "on",
                       duration_s=args.duration, width=args.width, interval_s=interval)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out).expanduser() if args.out else ddir / "captures" / stamp
    return capture(cfg, ddir, cameras, out, count=args.count, lights_on=args.lights == "on",
                   fmt=args.format, interval_s=args.interval or 0.0)


def select_cameras(cfg: StationConfig, names: Sequence[str]) -> list[CameraConfig]:
    """The configured cameras named by ``--camera`` (all when none); ``ConfigError`` names an
    unknown one and the valid names."""
    wanted = [n.strip() for item in names for n in item.split(",") if n.strip()]
    if not wanted:
        return list(cfg.cameras)
    valid = [c.name for c in cfg.cameras]
    unknown = [n for n in wanted if n not in valid]
    if unknown:
        raise ConfigError(
            f"--camera {', '.join(unknown)}: no such camera in the config; it has: "
            f"{', '.join(valid)}"
        )
    return [c for c in cfg.cameras if c.name in wanted]
