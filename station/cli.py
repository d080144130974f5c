"""The ``station`` command line: one console script, one subcommand per module.

Each module in ``station/commands/`` defines ``register(subparsers)`` that adds its
subcommand(s) and sets ``func`` (taking the parsed ``argparse.Namespace``, returning the exit
code). Modules are discovered, so a new subcommand is a new file and nothing else.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import structlog

import station.commands
from config.errors import ConfigError, StationError
from station import __version__
from station.logs import setup_logging

#: Exit codes shared by every subcommand.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every discovered subcommand."""
    parser = argparse.ArgumentParser(
        prog="station",
        description="Machine-vision inspection station: lights, cameras, segmentation, verdicts.",
    )
    parser.add_argument("--version", action="version", version=f"station {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(station.commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"station.commands.{info.name}")
        module.register(sub)
    return parser


class QuietPipe:
    """``sys.stdout`` that goes quiet once its reader has gone (``station status | head -1``).

    The first write or flush that meets a closed pipe points the descriptor at /dev/null, so
    the command finishes and exits with its own code (trigger: the verdict's), without a
    BrokenPipeError traceback.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        """Write, or swallow the text once the reader has gone."""
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._silence()
            return len(text)

    def flush(self) -> None:
        """Flush, or drop the buffer once the reader has gone."""
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._silence()

    def _silence(self) -> None:
        self.reader_gone = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``station`` script; returns the exit code."""
    out = sys.stdout
    quiet = QuietPipe(out)
    sys.stdout = quiet
    try:
        return _main(argv)
    finally:
        quiet.flush()
        sys.stdout = out


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Logs go to stderr so that stdout stays clean for --json output; `station run`
    # reconfigures them from the config (level, JSON under systemd). A caller that set up
    # structlog already (an embedding program, a test capturing logs) keeps its set-up.
    if not structlog.is_configured():
        setup_logging(os.environ.get("STATION_LOG_LEVEL", "warning"), "console")
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"station {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StationError as exc:
        print(f"station {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
