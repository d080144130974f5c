"""The terminal side of interactive commands: what they say and ask, live lines, Ctrl-C.

``Console`` is what ``station capture --calibrate`` talks through (unattended, it never
reads); ``sigint_flag`` turns Ctrl-C into a flag for loops that should end, not die (a live
focus step, the preview).
"""

from __future__ import annotations

import select
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TextIO


class Console:
    """What the calibration says and asks; unattended (``interactive=False``) never reads."""

    def __init__(self, out: TextIO, *, interactive: bool,
                 ask: Callable[[str], str] | None = None) -> None:
        self.out = out
        self.interactive = interactive
        self._ask = ask or input
        self._live = False

    def say(self, text: str = "") -> None:
        """One line (ends a live line first)."""
        if self._live:
            self.out.write("\n")
            self._live = False
        self.out.write(text + "\n")
        self.out.flush()

    def ask(self, prompt: str) -> str:
        """The technician's answer ('' when unattended)."""
        if not self.interactive:
            return ""
        self.say()
        try:
            return self._ask(prompt).strip().lower()
        except EOFError:  # Ctrl-D: the technician wants out
            return "q"

    def live(self, text: str) -> None:
        """A line rewritten in place on a terminal (plain lines otherwise)."""
        if self.out.isatty():
            self.out.write("\r" + text + "\x1b[K")
            self._live = True
            self.out.flush()
        else:
            self.say(text)

    def enter_pressed(self) -> bool:
        """True once the technician pressed Enter (non-blocking; False when unattended)."""
        if not self.interactive:
            return False
        try:
            ready, _, _ = select.select([sys.stdin], [], [], 0)
        except (OSError, ValueError):
            return False
        if ready:
            sys.stdin.readline()
            return True
        return False


@contextmanager
def sigint_flag() -> Iterator[list[bool]]:
    """While inside, Ctrl-C sets ``flag[0]`` instead of raising (ends a live step, not the run)."""
    flag = [False]

    def handler(signum: int, frame: FrameType | None) -> None:
        flag[0] = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
