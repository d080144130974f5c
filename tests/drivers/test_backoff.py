"""drivers.backoff: the one reconnect schedule."""

from __future__ import annotations

import math

import pytest

from drivers.backoff import Backoff


def test_waits_double_up_to_the_maximum_and_reset_starts_over() -> None:
    """0.5, 1, 2, 4, 8, then 10 for ever; ``current_s`` peeks without advancing; after
    ``reset`` the next failure waits the first wait again."""
    b = Backoff(0.5, 10.0)
    assert b.current_s == 0.5
    assert [b.next_wait() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.current_s == 10.0
    b.reset()
    assert b.current_s == 0.5 and b.next_wait() == 0.5 and b.next_wait() == 1.0


def test_a_maximum_below_the_first_wait_never_cuts_the_first_wait() -> None:
    """max_s < first_s: every wait is first_s; a zero first wait stays zero (retry at once)."""
    b = Backoff(2.0, 1.0)
    assert [b.next_wait() for _ in range(3)] == [2.0, 2.0, 2.0]
    z = Backoff(0.0, 5.0)
    assert [z.next_wait() for _ in range(3)] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(("first", "most"), [(-0.1, 1.0), (math.nan, 1.0), (0.5, math.inf),
                                             (0.5, -1.0)])
def test_negative_or_non_finite_waits_are_refused(first: float, most: float) -> None:
    """A schedule that could never be kept is a ValueError naming the value."""
    with pytest.raises(ValueError, match=r"backoff (first_s|max_s) must be a finite number"):
        Backoff(first, most)
