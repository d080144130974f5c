"""Options shared by subcommands: ``--config``, ``--set``, ``--data-dir``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from config import StationConfig, load_config


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
