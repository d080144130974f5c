"""Tests of station.hmi.state: the HMI's own SQLite (acknowledgements, disagreements)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import StoreError
from station.hmi.state import MAX_NOTE, Disagreement, HmiState


def test_acknowledgements_keep_the_latest_bound(tmp_path: Path) -> None:
    """acknowledged_upto is the latest acknowledged time, across a reopen."""
    state = HmiState(tmp_path / "hmi")
    assert state.acknowledged_upto() is None
    state.acknowledge("2026-11-22T10:00:00.000+00:00", "lights checked")
    state.acknowledge("2026-11-22T09:00:00.000+00:00")  # an older one does not go back
    state.close()
    state = HmiState(tmp_path / "hmi")
    assert state.acknowledged_upto() == "2026-11-22T10:00:00.000+00:00"
    state.close()


def test_disagreements_are_recorded_and_replaced(tmp_path: Path) -> None:
    """A second mark on the same inspection replaces the first; lookups by id and all."""
    state = HmiState(tmp_path)
    first = Disagreement("id1", "t1", "P-1", "FAIL", "good", "scratch is dust", ["images/a.jpg"])
    state.disagree(first)
    state.disagree(Disagreement("id1", "t2", "P-1", "FAIL", "good", "dust, twice", []))
    state.disagree(Disagreement("id2", "t3", None, "PASS", "defective", "", []))
    marks = state.disagreements(["id1", "id9"])
    assert list(marks) == ["id1"] and marks["id1"].note == "dust, twice"
    assert set(state.all_disagreements()) == {"id1", "id2"}
    assert state.disagreements([]) == {}
    state.close()


def test_overlong_notes_are_refused(tmp_path: Path) -> None:
    """A note over MAX_NOTE characters is a ValueError naming the limit."""
    state = HmiState(tmp_path)
    with pytest.raises(ValueError, match=f"at most {MAX_NOTE}"):
        state.acknowledge("2026-11-22T10:00:00.000+00:00", "x" * (MAX_NOTE + 1))
    state.close()


def test_an_unwritable_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    """A state directory below a file names the key to set."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match=r"hmi\.state_dir"):
        HmiState(blocker / "hmi")
