"""The camera rig on replay cameras: concurrency, skew, retries, loss, recovery, bounds."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.cameras import CameraConfig, ReplayConfig
from config.errors import CameraError, CameraLost, CameraTimeout, IncompleteFrame
from drivers.cameras import CameraRig, ReplayCamera, open_camera

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
Events = list[tuple[str, dict[str, object]]]


def _cams(n: int = 2, readout_ms: float = 0.0, timeout_s: float = 1.0) -> list[ReplayCamera]:
    cams = []
    for i in range(n):
        cfg = CameraConfig(name=f"cam{i}", timeout_s=timeout_s, replay=ReplayConfig(
            images=["samples/*.png"], readout_ms=readout_ms))
        cam = open_camera(cfg, CONFIG_DIR)
        assert isinstance(cam, ReplayCamera)
        cams.append(cam)
    return cams


@pytest.fixture
def events() -> Events:
    """The rig's events, in order."""
    return []


@pytest.fixture
def rig_factory(events: Events) -> Iterator[object]:
    """Build rigs that are closed after the test."""
    rigs: list[CameraRig] = []

    def make(cams: list[ReplayCamera], **kw: object) -> CameraRig:
        rig = CameraRig(cams, on_event=lambda k, d: events.append((k, d)),
                        reconnect_backoff_s=0.05, monitor_interval_s=0.02, **kw)  # type: ignore[arg-type]
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def _wait_for(events: Events, kind: str, timeout_s: float = 5.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for k, d in events:
            if k == kind:
                return d
        time.sleep(0.01)
    raise AssertionError(f"no {kind} event within {timeout_s} s; got {events}")


def test_acquire_grabs_concurrently_and_records_skew(rig_factory) -> None:  # type: ignore[no-untyped-def]
    """Two cameras with 300 ms readout each take ~300 ms together, not 600; skew recorded."""
    rig = rig_factory(_cams(readout_ms=300))
    rig.open()
    t0 = time.monotonic()
    frames = rig.acquire()
    elapsed = time.monotonic() - t0
    assert [f.camera for f in frames] == ["cam0", "cam1"]
    assert elapsed < 0.55, f"grabs were not concurrent: {elapsed:.3f} s"
    assert rig.last_skew_clock == "host" and rig.last_skew_ns is not None
    assert rig.last_skew_ns < 100_000_000
    assert frames[0].extra["skew_ns"] == str(rig.last_skew_ns)
    assert frames[1].extra["skew_clock"] == "host"


def test_caller_thread_stays_free_while_cameras_wait(rig_factory) -> None:  # type: ignore[no-untyped-def]
    """A 'ping' thread is answered within 50 ms while both cameras are in a 400 ms grab."""
    rig = rig_factory(_cams(readout_ms=400))
    rig.open()
    done = threading.Event()
    worst = [0.0]

    def ping() -> None:
        while not done.is_set():
            t = time.monotonic()
            time.sleep(0.005)
            worst[0] = max(worst[0], time.monotonic() - t)

    pinger = threading.Thread(target=ping)
    pinger.start()
    rig.acquire()
    done.set()
    pinger.join()
    assert worst[0] < 0.05


def test_incomplete_frame_is_retried_once(rig_factory) -> None:  # type: ignore[no-untyped-def]
    """One incomplete frame is retried and the retry returned; two in a row fail by name."""
    cams = _cams()
    rig = rig_factory(cams)
    rig.open()
    cams[1].inject_fault("incomplete")
    frames = rig.acquire()
    assert all(f.complete for f in frames)
    cams[1].inject_fault("incomplete", count=2)
    with pytest.raises(IncompleteFrame, match=r"camera cam1: frame .* incomplete twice"):
        rig.acquire()
    assert rig.acquire()[1].complete


def test_timeouts_name_the_camera_and_two_in_a_row_mean_lost(rig_factory, events) -> None:  # type: ignore[no-untyped-def]
    """A timeout raises CameraTimeout naming the camera; the second in a row loses it."""
    cams = _cams(timeout_s=0.1)
    rig = rig_factory(cams, lost_after_timeouts=2)
    rig.open()
    cams[0].inject_fault("timeout", count=2)
    with pytest.raises(CameraTimeout, match=r"camera cam0: no frame within 0.100 s"):
        rig.acquire()
    assert not events
    with pytest.raises(CameraTimeout, match=r"cam0"):
        rig.acquire()
    lost = _wait_for(events, "camera_lost")
    assert lost["camera"] == "cam0" and "no frame" in str(lost["reason"])
    _wait_for(events, "camera_recovered")
    assert len(rig.acquire()) == 2


def test_lost_camera_is_reported_and_recovered_with_backoff(rig_factory, events) -> None:  # type: ignore[no-untyped-def]
    """A lost camera: one camera_lost, acquire fails fast by name, then camera_recovered."""
    cams = _cams()
    rig = rig_factory(cams)
    rig.open()
    cams[1].inject_fault("lost", count=3)  # the device stays away for two reopen attempts
    with pytest.raises(CameraLost, match=r"cam1.*unplugged"):
        rig.acquire()
    assert _wait_for(events, "camera_lost")["camera"] == "cam1"
    t0 = time.monotonic()
    try:
        rig.acquire()
    except CameraLost as exc:
        assert "camera cam1 is not connected" in str(exc)
        assert time.monotonic() - t0 < 0.05
    rec = _wait_for(events, "camera_recovered")
    assert rec["camera"] == "cam1" and rec["attempts"] == 3
    assert "reopened after" in str(rec["reason"])
    assert [k for k, _ in events] == ["camera_lost", "camera_recovered"]
    health = {h.name: h for h in rig.health()}
    assert health["cam1"].connected and health["cam1"].reconnects == 1
    assert len(rig.acquire()) == 2


def test_open_failure_is_not_fatal(rig_factory, events) -> None:  # type: ignore[no-untyped-def]
    """A camera that fails to open is reported lost, the others work, it comes back later."""
    cams = _cams()
    cams[0].open()
    cams[0].inject_fault("lost", count=3)  # the next grab, then two opens fail
    cams[0].trigger()
    with pytest.raises(CameraLost):
        cams[0].grab(1.0)
    rig = rig_factory(cams)
    rig.open()
    assert _wait_for(events, "camera_lost")["camera"] == "cam0"
    assert "open failed" in str(events[0][1]["reason"])
    health = rig.health()
    assert not health[0].connected and "reconnecting" in health[0].detail
    assert health[1].connected
    _wait_for(events, "camera_recovered")
    assert len(rig.acquire()) == 2


def test_broken_listener_does_not_break_the_rig() -> None:
    """An on_event callback that raises is logged, and recovery goes on."""
    def bad(kind: str, data: dict[str, object]) -> None:
        raise RuntimeError("listener bug")

    cams = _cams()
    rig = CameraRig(cams, on_event=bad, reconnect_backoff_s=0.05, monitor_interval_s=0.02)
    try:
        rig.open()
        cams[0].inject_fault("lost")
        with pytest.raises(CameraLost):
            rig.acquire()
        deadline = time.monotonic() + 3
        while not rig.health()[0].connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rig.health()[0].connected
    finally:
        rig.close()


def test_usage_errors_and_bounded_idempotent_close(rig_factory) -> None:  # type: ignore[no-untyped-def]
    """acquire before open or after close is a CameraError; close twice is fine and quick."""
    rig = rig_factory(_cams())
    with pytest.raises(CameraError, match=r"needs open"):
        rig.acquire()
    rig.open()
    t0 = time.monotonic()
    rig.close()
    rig.close()
    assert time.monotonic() - t0 < 1.0
    with pytest.raises(CameraError, match=r"needs open"):
        rig.acquire()
    with pytest.raises(ValueError, match=r"unique"):
        CameraRig([*_cams(1), *_cams(1)])


def _line_cams(n: int = 2) -> list[ReplayCamera]:
    cams = []
    for i in range(n):
        cfg = CameraConfig(name=f"cam{i}", timeout_s=1.0, replay=ReplayConfig(
            images=["samples/*.png"], trigger="external"))
        cam = open_camera(cfg, CONFIG_DIR)
        assert isinstance(cam, ReplayCamera)
        cams.append(cam)
    return cams


class Received:
    """Frames handed over by the rig's listeners, waited for on a condition."""

    def __init__(self) -> None:
        self.frames: list[object] = []
        self.cond = threading.Condition()

    def __call__(self, frame: object) -> None:
        with self.cond:
            self.frames.append(frame)
            self.cond.notify_all()

    def wait(self, n: int, timeout_s: float = 30.0) -> list[object]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.frames) >= n, timeout_s), self.frames
            return list(self.frames)


def test_listen_hands_over_every_frame_the_line_triggers(rig_factory, events) -> None:  # type: ignore[no-untyped-def]
    """listen(): each camera's frames arrive as its line fires, in order, without a
    trigger; slices without a frame are no fault (no timeout counted, nothing lost)."""
    cams = _line_cams()
    rig = rig_factory(cams, lost_after_timeouts=1)
    rig.open()
    got = Received()
    rig.listen(got, slice_s=0.02)
    with pytest.raises(CameraError, match=r"already listening"):
        rig.listen(got)
    cams[0].pulse(at_ns=5)
    cams[1].pulse(at_ns=6)
    cams[0].pulse(at_ns=7)
    frames = got.wait(3)
    assert sorted((f.camera, f.frame_id, f.host_timestamp_ns) for f in frames) == [  # type: ignore[attr-defined]
        ("cam0", 0, 5), ("cam0", 1, 7), ("cam1", 0, 6)]
    assert [h.connected for h in rig.health()] == [True, True]
    assert [h.errors for h in rig.health()] == [0, 0]
    assert not [k for k, _ in events if k == "camera_lost"]
    rig.stop_listening()
    cams[0].pulse()
    assert cams[0].grab(1.0).frame_id == 2  # nobody listens any more: the frame stays


def test_listen_reports_a_lost_camera_and_listens_again_after_recovery(rig_factory, events) -> None:  # type: ignore[no-untyped-def]
    """A camera lost while listened to is reported, reopened by the supervisor, and its
    frames are handed over again."""
    cams = _line_cams()
    rig = rig_factory(cams)
    rig.open()
    got = Received()
    rig.listen(got, slice_s=0.02)
    cams[1].inject_fault("lost")
    cams[1].pulse()
    _wait_for(events, "camera_lost")
    _wait_for(events, "camera_recovered")
    cams[1].pulse(frame_id=9)
    frames = got.wait(1)
    assert [(f.camera, f.frame_id) for f in frames] == [("cam1", 9)]  # type: ignore[attr-defined]
    with pytest.raises(CameraError, match=r"needs open"):
        rig_factory(_line_cams(1)).listen(got)
