"""``station run``: the daemon."""

from __future__ import annotations

import argparse

from station.commands._common import (
    add_config_options,
    add_data_dir_option,
    config_from_args,
    data_dir,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station run``."""
    p = sub.add_parser(
        "run", help="run the station daemon",
        description="Run the daemon: open lights and cameras, load the model, bind the "
        "ZeroMQ sockets, notify systemd, inspect on every trigger until SIGTERM/SIGINT.",
    )
    add_config_options(p)
    add_data_dir_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run until a signal; exit 0 after a clean shutdown."""
    from station.app import build_daemon
    from station.logs import setup_logging

    cfg = config_from_args(args)
    setup_logging(cfg.logging.level, cfg.logging.format)
    daemon = build_daemon(cfg, data_dir(args, cfg))
    daemon.install_signal_handlers()  # after the drivers: harvesters installs its own
    try:
        daemon.start()
    except BaseException:
        daemon.abort()
        raise
    daemon.serve()
    return 0
