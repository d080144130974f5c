"""Structured logging: JSON under systemd or without a terminal, readable on a terminal."""

from __future__ import annotations

import logging
import os
import sys
from typing import Literal

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def choose_format(fmt: Literal["auto", "console", "json"]) -> Literal["console", "json"]:
    """Resolve 'auto': JSON under systemd (JOURNAL_STREAM) or when stderr is no terminal."""
    if fmt != "auto":
        return fmt
    if os.environ.get("JOURNAL_STREAM") or not sys.stderr.isatty():
        return "json"
    return "console"


def _stderr_logger(*args: object) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def setup_logging(level: str = "info", fmt: Literal["auto", "console", "json"] = "auto") -> None:
    """Configure structlog (and the stdlib root logger) to write to stderr."""
    lvl = _LEVELS.get(level, logging.INFO)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if choose_format(fmt) == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        # sys.stderr looked up at each call, not bound once: it may be replaced later
        # (test capture, a redirecting caller).
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=lvl, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
