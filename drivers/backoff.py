"""The one reconnect schedule: bounded exponential backoff.

Used by the camera rig (reopening a lost camera) and meant for every other reconnect (the
luminaire controller's port), so that "first wait, doubled after every failure, up to a
maximum" is written once::

    backoff = Backoff(first_s=0.5, max_s=10.0)
    next_try = now + backoff.next_wait()   # after a failure: 0.5, then 1, 2, 4, 8, 10, 10 ...
    backoff.reset()                        # after a success: back to 0.5
"""

from __future__ import annotations

import math


class Backoff:
    """Waits between attempts: ``first_s``, doubled after every failure, at most ``max_s``.

    A ``max_s`` below ``first_s`` is raised to it (the first wait is never cut). Not
    thread-safe: its owner holds whatever lock guards its other state.
    """

    def __init__(self, first_s: float, max_s: float) -> None:
        if not (math.isfinite(first_s) and first_s >= 0):
            raise ValueError(f"backoff first_s must be a finite number >= 0 s, got {first_s!r}")
        if not (math.isfinite(max_s) and max_s >= 0):
            raise ValueError(f"backoff max_s must be a finite number >= 0 s, got {max_s!r}")
        self.first_s = first_s
        self.max_s = max(max_s, first_s)
        self._next = first_s

    @property
    def current_s(self) -> float:
        """The wait the next failure gets (what ``next_wait`` will return) [s]."""
        return self._next

    def next_wait(self) -> float:
        """The wait before the next attempt [s]; the one after it is doubled (bounded)."""
        wait = self._next
        self._next = min(self.max_s, wait * 2)
        return wait

    def reset(self) -> None:
        """After a success: the next failure waits ``first_s`` again."""
        self._next = self.first_s
