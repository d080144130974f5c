"""Frames of line-triggered cameras paired into parts: made-up arrival times, no clocks."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.cameras.pairing import FramePairer, FrameSet
from drivers.frame import Frame

MS = 1_000_000
T0 = 1_700_000_000_000 * MS  # an arbitrary host time [ns]


def frame(camera: str, frame_id: int, at_ms: float, device_ns: int | None = None) -> Frame:
    """A tiny frame of ``camera`` that arrived ``at_ms`` after T0."""
    return Frame(camera=camera, frame_id=frame_id, host_timestamp_ns=T0 + round(at_ms * MS),
                 pixel_format="Mono8", data=np.zeros((2, 2), np.uint8),
                 device_timestamp_ns=device_ns)


def pairer(window_ms: float = 50, timeout_ms: float = 500) -> FramePairer:
    """Two cameras, no hand-over allowance (the times below are exact)."""
    return FramePairer(["cam0", "cam1"], round(window_ms * MS), round(timeout_ms * MS),
                       handover_ns=0)


def ids(s: FrameSet) -> dict[str, int]:
    """camera -> frame id of a set."""
    return {f.camera: f.frame_id for f in s.frames}


def test_frames_with_matching_ids_within_the_window_are_one_part() -> None:
    """Both cameras' frames of each trigger arrive within the window: one set per trigger,
    in trigger order, with its skew; the ids moving on together are no problem."""
    p = pairer()
    for k in range(3):
        p.offer(frame("cam0", 10 + k, 200 * k + 1.0, device_ns=1000 * k))
        p.offer(frame("cam1", 40 + k, 200 * k + 4.5, device_ns=1000 * k + 7))
    sets = p.ready(T0 + 1000 * MS)
    assert [ids(s) for s in sets] == [{"cam0": 10 + k, "cam1": 40 + k} for k in range(3)]
    assert all(s.reason is None for s in sets)
    assert [s.skew_ns for s in sets] == [3_500_000] * 3
    assert [s.device_skew_ns for s in sets] == [7] * 3
    assert sets[1].first_arrival_ns == T0 + 201 * MS
    assert p.waiting() == 0


def test_a_part_waits_for_its_partner_until_the_timeout() -> None:
    """A frame alone is not decided before the timeout (its partner may still come); at the
    timeout it is a missing partner naming the camera, the frame and the setting."""
    p = pairer()
    p.offer(frame("cam0", 7, 0))
    assert p.ready(T0 + 499 * MS) == []
    (s,) = p.ready(T0 + 500 * MS)
    assert ids(s) == {"cam0": 7} and s.skew_ns is None
    assert s.reason is not None and s.reason.startswith("missing partner: no frame from cam1")
    assert "cycle.pair_timeout_ms = 500.0 ms" in s.reason and "cam0's frame 7" in s.reason


def test_a_camera_that_missed_a_trigger_costs_one_part_not_two() -> None:
    """cam1 misses trigger 2 (its counter does not move): part 2 is one ERROR naming cam1,
    part 3 pairs normally although the ids now differ by one more (the reference is reset
    after a missing frame), part 4 is checked against part 3 again."""
    p = pairer()
    p.offer(frame("cam0", 1, 0))
    p.offer(frame("cam1", 1, 2))
    p.offer(frame("cam0", 2, 170))
    p.offer(frame("cam0", 3, 340))
    p.offer(frame("cam1", 2, 341))  # cam1's counter did not count the missed trigger
    p.offer(frame("cam0", 4, 510))
    p.offer(frame("cam1", 3, 512))
    sets = p.ready(T0 + 2000 * MS)
    assert [ids(s) for s in sets] == [{"cam0": 1, "cam1": 1}, {"cam0": 2},
                                      {"cam0": 3, "cam1": 2}, {"cam0": 4, "cam1": 3}]
    assert sets[0].reason is None and sets[2].reason is None and sets[3].reason is None
    reason = sets[1].reason
    assert reason is not None and reason.startswith("missing partner: no frame from cam1")
    assert "cam1 missed this trigger" in reason


def test_the_missing_partner_is_decided_as_soon_as_the_next_part_shows_it() -> None:
    """When cam1's next frame arrives with cam0's next one, cam0's lone frame is decided
    without waiting for the timeout."""
    p = pairer()
    p.offer(frame("cam0", 5, 0))
    p.offer(frame("cam0", 6, 170))
    p.offer(frame("cam1", 6, 171))
    first, second = p.ready(T0 + 172 * MS)
    assert ids(first) == {"cam0": 5} and "missing partner" in str(first.reason)
    assert ids(second) == {"cam0": 6, "cam1": 6} and second.reason is None


def test_skew_beyond_the_window_is_one_error_part_with_the_skew() -> None:
    """A frame of the same trigger (its id says so) arriving 80 ms after its partner, with a
    50 ms window: one set, an ERROR naming the skew and the setting; the next part pairs."""
    p = pairer()
    p.offer(frame("cam0", 1, 0))
    p.offer(frame("cam1", 1, 1))
    p.offer(frame("cam0", 2, 200))
    p.offer(frame("cam1", 2, 280))
    assert len(p.ready(T0 + 300 * MS)) == 1  # cam0's next frame might still come beside it
    (late,) = p.ready(T0 + 331 * MS)
    assert ids(late) == {"cam0": 2, "cam1": 2}
    assert late.skew_ns == 80 * MS
    assert late.reason is not None and "arrived 80.0 ms apart, beyond cycle.pair_window_ms = " \
        "50.0 ms" in late.reason
    p.offer(frame("cam0", 3, 400))
    p.offer(frame("cam1", 3, 401))
    (ok,) = p.ready(T0 + 500 * MS)
    assert ok.reason is None and ids(ok) == {"cam0": 3, "cam1": 3}


def test_a_late_frame_whose_id_belongs_to_another_trigger_is_not_a_partner() -> None:
    """Beyond the window and with the wrong id: cam0's part is missing cam1's frame, and
    cam1's frame is decided on its own later."""
    p = pairer()
    p.offer(frame("cam0", 1, 0))
    p.offer(frame("cam1", 1, 1))
    p.offer(frame("cam0", 2, 200))
    p.offer(frame("cam1", 3, 280))
    sets = p.ready(T0 + 2000 * MS)
    assert [ids(s) for s in sets] == [{"cam0": 1, "cam1": 1}, {"cam0": 2}, {"cam1": 3}]
    assert "its id belongs to another trigger" in str(sets[1].reason)
    assert "no frame from cam0" in str(sets[2].reason)


def test_ids_that_disagree_within_the_window_are_an_error_and_the_new_reference() -> None:
    """Both frames arrive together but cam1's id jumped by two while cam0's moved by one:
    ERROR (a doubled or missed trigger); the next set is checked against these ids."""
    p = pairer()
    for cam, i, at in (("cam0", 1, 0), ("cam1", 1, 1), ("cam0", 2, 200), ("cam1", 3, 201),
                       ("cam0", 3, 400), ("cam1", 4, 401)):
        p.offer(frame(cam, i, at))
    first, bad, good = p.ready(T0 + 1000 * MS)
    assert first.reason is None and good.reason is None
    assert bad.reason is not None and bad.reason.startswith("frame ids disagree: cam0 2, cam1 3")
    assert bad.skew_ns == 1 * MS


def test_resync_forgets_the_reference() -> None:
    """After resync (a camera reopened, its counter restarted) new ids are accepted."""
    p = pairer()
    p.offer(frame("cam0", 9, 0))
    p.offer(frame("cam1", 9, 1))
    p.ready(T0 + 100 * MS)
    p.resync()
    p.offer(frame("cam0", 10, 200))
    p.offer(frame("cam1", 0, 201))
    (s,) = p.ready(T0 + 300 * MS)
    assert s.reason is None


def test_flush_decides_every_waiting_frame_and_overflow_does_not_grow() -> None:
    """flush (shutdown) turns every waiting frame into a set; more than max_waiting frames
    of one camera are decided at once instead of piling up."""
    p = pairer()
    p.offer(frame("cam0", 1, 0))
    p.offer(frame("cam1", 1, 1))
    p.offer(frame("cam1", 2, 100))
    sets = p.flush()
    assert [ids(s) for s in sets] == [{"cam0": 1, "cam1": 1}, {"cam1": 2}]
    assert p.waiting() == 0
    small = FramePairer(["cam0", "cam1"], 50 * MS, 500 * MS, max_waiting=3, handover_ns=0)
    for k in range(3):
        small.offer(frame("cam0", k, k))
    assert len(small.ready(T0)) >= 1 and small.waiting() < 3


def test_one_camera_and_bad_arguments() -> None:
    """A single camera makes a part of every frame; bad arguments are refused, naming them."""
    p = FramePairer(["only"], MS, MS)
    p.offer(frame("only", 3, 0))
    (s,) = p.ready(T0)
    assert s.reason is None and s.skew_ns == 0
    with pytest.raises(ValueError, match="not one of only"):
        p.offer(frame("other", 1, 0))
    with pytest.raises(ValueError, match="distinct"):
        FramePairer(["a", "a"], MS, MS)
    with pytest.raises(ValueError, match="window_ns <= timeout_ns"):
        FramePairer(["a"], 2 * MS, MS)
