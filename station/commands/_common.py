"""What subcommands share: ``--config``, ``--set``, ``--data-dir``, and :func:`in_range`, the
one argparse type for a bounded number."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from config import StationConfig, load_config
from config.pipeline import PipelineConfig

N = TypeVar("N", int, float)
#: Unit symbols spelt out in "is not a number of ..." messages.
_UNIT_WORDS = {"s": "seconds", "ms": "milliseconds", "px": "pixels"}


def in_range(
    kind: type[N], low: N, high: N, what: str = "", *, unit: str = "", low_open: bool = False,
) -> Callable[[str], N]:
    """An argparse ``type``: a whole number (``kind=int``) or a number (``float``) within
    ``low..high`` (``(low, high]`` with ``low_open``).

    Errors name ``what``, the value and the rule, e.g. ``channel 0 is outside 1..99``,
    ``duration 0.0 s is outside (0, 3600]``, ``'soon' is not a number of seconds``; argparse
    puts the option's name in front.
    """
    noun = "a whole number" if kind is int else "a number"
    if unit:
        noun += f" of {_UNIT_WORDS.get(unit, unit)}"
    prefix = f"{what} " if what else ""
    suffix = f" {unit}" if unit else ""

    def show(x: N) -> str:
        return str(x) if isinstance(x, int) else f"{x:g}"

    rule = f"({show(low)}, {show(high)}]" if low_open else f"{show(low)}..{show(high)}"

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{prefix}{text!r} is not {noun}") from None
        inside = (low < value if low_open else low <= value) and value <= high
        if not inside:
            raise argparse.ArgumentTypeError(f"{prefix}{value}{suffix} is outside {rule}")
        return value

    return parse


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and repeatable ``--set dotted.key=value``."""
    parser.add_argument(
        "--config", "-c", metavar="FILE",
        help="config file, or a shipped one: default, genicam-sim, booth.example "
        "(default: $STATION_CONFIG or 'default')",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one config key, e.g. --set cycle.queue_depth=4 (repeatable)",
    )


def add_data_dir_option(parser: argparse.ArgumentParser) -> None:
    """``--data-dir DIR``: where the store, defect maps and calibration live."""
    parser.add_argument(
        "--data-dir", metavar="DIR",
        help="data directory (default: storage.data_dir of the config, else $STATION_DATA_DIR, "
        "else $XDG_DATA_HOME/station)",
    )


def device_and_pipeline(args: argparse.Namespace) -> tuple[str, PipelineConfig | None]:
    """For the commands that run a model over images: ``--device`` (``auto`` resolved as the
    station resolves it) and the ``pipeline`` section of ``--config`` (None without one)."""
    from models.runtime import select_device

    device = select_device(args.device).type
    pipeline = load_config(args.config).pipeline if args.config else None
    return device, pipeline


def config_from_args(args: argparse.Namespace) -> StationConfig:
    """Load the config named by ``--config`` with ``--set`` overrides applied."""
    return load_config(getattr(args, "config", None), getattr(args, "overrides", []))


def data_dir(args: argparse.Namespace, cfg: StationConfig | None = None) -> Path:
    """The data directory: --data-dir, the config's storage.data_dir, $STATION_DATA_DIR,
    $XDG_DATA_HOME/station, ~/.local/share/station, in that order."""
    if getattr(args, "data_dir", None):
        return Path(args.data_dir).expanduser()
    if cfg is not None and cfg.storage.data_dir:
        return cfg.resolve(cfg.storage.data_dir)
    if os.environ.get("STATION_DATA_DIR"):
        return Path(os.environ["STATION_DATA_DIR"]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "station"
