"""``station run``: the daemon."""

from __future__ import annotations

import argparse
import logging
import os
import sys

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
        description="Run the daemon: check the files the config names, the data directory "
        "and the endpoints, load the model, open lights and cameras, bind the ZeroMQ sockets, "
        "notify systemd, inspect on every trigger until SIGTERM/SIGINT. The start-up log says "
        "where the data directory is. Exit 0 after a clean stop, 1 when something cannot be "
        "opened (the message says what), 2 for a config error.",
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
    # reload reads the same file with the same overrides again
    daemon = build_daemon(cfg, data_dir(args, cfg), config_loader=lambda: config_from_args(args))
    daemon.install_signal_handlers()  # after the drivers: harvesters installs its own
    try:
        daemon.start()
    except BaseException:
        daemon.abort()
        raise
    daemon.serve()
    # Everything is closed (drivers, sockets, store). The interpreter's own teardown of torch
    # and OpenCV would take 1.5-5 s more, counted against systemd's TimeoutStopSec and
    # nothing else needs it: leave now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
