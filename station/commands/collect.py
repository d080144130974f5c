"""``station collect``: every booth's verdicts from the plant's MQTT broker into PostgreSQL
(optional extra ``collect``; docs/fleet.md)."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from config.errors import ConfigError
from station.commands._common import add_config_options, config_from_args


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station collect``."""
    p = sub.add_parser(
        "collect", help="write every booth's verdicts from the MQTT broker into PostgreSQL",
        description="Subscribe to the plant's MQTT broker (the mqtt section: host, port, TLS, "
        "credentials) on collect.topics and write every verdict into the PostgreSQL table "
        "collect.table (created when missing), once each by inspection id; a verdict is "
        "acknowledged to the broker only after its row is committed. Runs until SIGTERM or "
        "SIGINT. Needs the extra: pip install 'inspection-station[collect]'. See "
        "docs/fleet.md.",
    )
    add_config_options(p)
    p.add_argument("--database", metavar="CONNINFO",
                   help="PostgreSQL connection string (default: collect.database)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Collect until a signal; exit 0 after a clean stop."""
    from station.logs import setup_logging

    try:
        from station.plant.collector import Collector
        from station.plant.database import VerdictTable
        from station.plant.link import check_settings
    except ImportError as exc:
        raise ConfigError(
            f"station collect needs the optional extra 'collect' ({exc.name} is missing): "
            "pip install 'inspection-station[collect]'"
        ) from None
    cfg = config_from_args(args)
    setup_logging(cfg.logging.level, cfg.logging.format)
    check_settings(cfg)
    table = VerdictTable(args.database or cfg.collect.database, cfg.collect.table)
    collector = Collector(cfg, table)
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    collector.run(stop)
    return 0
