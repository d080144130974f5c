"""The daemon in-process with real parts (replay cameras, light simulator on a pty, the default
model, real sockets, SQLite), driven over ZeroMQ while faults are injected into the parts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from config import load_config
from drivers.cameras import ReplayCamera
from drivers.lights import SimulatedLuminaires
from station.app import build_daemon
from station.daemon import Daemon
from station.messaging.client import request
from tests.e2e.conftest import free_port


class Harness:
    """A daemon serving in a thread, a SUB socket that has joined, helpers to talk to it."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.command = daemon.cfg.messaging.command
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(daemon.cfg.messaging.publish)
        self.events: list[dict[str, Any]] = []
        self.verdicts: dict[str, dict[str, Any]] = {}
        self.published: list[str] = []  # inspection ids in the order published
        self.thread = threading.Thread(target=daemon.serve, name="daemon")

    def start(self) -> None:
        self.daemon.start()
        self.thread.start()
        self.wait_for(lambda: self._seen_status, 30, "a status message")

    _seen_status = False

    def pump(self, timeout_ms: int = 100) -> None:
        while self.sub.poll(timeout_ms):
            topic, header, *_ = self.sub.recv_multipart()
            data = json.loads(header)
            if topic == b"status":
                self._seen_status = True
            elif topic == b"event":
                self.events.append(data)
            elif topic == b"verdict":
                self.verdicts[data["inspection_id"]] = data
                self.published.append(data["inspection_id"])
            timeout_ms = 0

    def wait_for(self, cond: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self.pump()

    def inspect(self, part_id: str = "P") -> dict[str, Any]:
        reply = request(self.command, {"command": "inspect", "part_id": part_id, "wait": True},
                        60)
        assert reply["ok"], reply
        result: dict[str, Any] = reply["result"]
        return result

    def stop(self) -> None:
        self.daemon.stop()
        self.thread.join(15)
        assert not self.thread.is_alive(), "daemon did not stop"
        self.sub.close()
        self.ctx.term()

    @property
    def lights(self) -> SimulatedLuminaires:
        lights = self.daemon.lights
        assert isinstance(lights, SimulatedLuminaires)
        return lights

    def camera(self, name: str) -> ReplayCamera:
        cam = {c.name: c for c in self.daemon.rig.cameras}[name]
        assert isinstance(cam, ReplayCamera)
        return cam


def make_daemon(tmp_path: Path, *overrides: str) -> Daemon:
    cfg = load_config("default", [
        f"messaging.command=tcp://127.0.0.1:{free_port()}",
        f"messaging.publish=tcp://127.0.0.1:{free_port()}",
        "messaging.status_interval_s=0.2", "lights.reply_timeout_s=0.2", "lights.retries=1",
        "lights.settle_ms=0", "cameras.0.timeout_s=0.5", "cameras.1.timeout_s=0.5",
        *overrides,
    ], env={})
    return build_daemon(cfg, tmp_path / "data")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(make_daemon(tmp_path))
    h.start()
    yield h
    if h.thread.is_alive():
        h.stop()


def test_lights_fault_gives_error_then_recovers(harness: Harness) -> None:
    """A controller that stops answering: ERROR naming the lights; answering again: verdicts."""
    assert harness.inspect()["verdict"] in ("PASS", "FAIL")
    harness.lights.simulator.set_fault("no_reply")
    header = harness.inspect()
    assert header["verdict"] == "ERROR"
    assert any(r.startswith("lights") for r in header["reasons"]), header["reasons"]
    harness.lights.simulator.set_fault("none")
    assert harness.inspect()["verdict"] in ("PASS", "FAIL")
    assert not harness.lights.simulator.lit_channels(), "a luminaire was left on"


def test_lights_port_vanishes_and_comes_back(harness: Harness) -> None:
    """The serial port disappears mid-run: ERROR verdicts, then recovery by reopening."""
    harness.lights.simulator.set_fault("port_closed")
    assert harness.inspect()["verdict"] == "ERROR"
    harness.lights.simulator.set_fault("none")
    deadline = time.monotonic() + 15
    while harness.inspect()["verdict"] == "ERROR":
        assert time.monotonic() < deadline, "lights never recovered"
        time.sleep(0.3)


def test_camera_timeout_and_incomplete_frames_are_errors(harness: Harness) -> None:
    """A camera timeout, and an incomplete frame twice in a row, are ERRORs naming the camera."""
    harness.camera("cam1").inject_fault("timeout")
    header = harness.inspect()
    assert header["verdict"] == "ERROR" and "cam1" in " ".join(header["reasons"])
    harness.camera("cam0").inject_fault("incomplete", count=2)
    header = harness.inspect()
    assert header["verdict"] == "ERROR" and "incomplete" in " ".join(header["reasons"])
    assert header["maps"] == []
    harness.camera("cam0").inject_fault("incomplete", count=1)  # retried once: fine
    assert harness.inspect()["verdict"] in ("PASS", "FAIL")


def test_camera_lost_events_and_recovery(harness: Harness) -> None:
    """A camera unplugged: ERROR, a camera_lost event, then camera_recovered and verdicts."""
    harness.camera("cam0").inject_fault("lost", count=2)
    assert harness.inspect()["verdict"] == "ERROR"
    harness.wait_for(lambda: any(e["kind"] == "camera_recovered" for e in harness.events), 30,
                     "camera_recovered")
    kinds = [e["kind"] for e in harness.events]
    assert "camera_lost" in kinds and kinds.index("camera_lost") < kinds.index("camera_recovered")
    assert harness.inspect()["verdict"] in ("PASS", "FAIL")


def test_ping_and_status_answered_while_a_cycle_runs(harness: Harness) -> None:
    """The command socket is never blocked by a cycle: ping comes back before the verdict."""
    harness.camera("cam0").inject_fault("timeout")  # this cycle waits 0.5 s on cam0
    reply = request(harness.command, {"command": "inspect"}, 5)
    iid = reply["result"]["inspection_id"]
    t0 = time.monotonic()
    assert request(harness.command, {"command": "ping"}, 5)["ok"]
    status = request(harness.command, {"command": "status"}, 5)["result"]
    assert time.monotonic() - t0 < 0.5
    assert status["queue"]["in_flight"] + status["queue"]["waiting"] >= 1
    harness.wait_for(lambda: iid in harness.verdicts, 30, "the verdict")


def test_shutdown_answers_every_accepted_trigger(tmp_path: Path) -> None:
    """Stopping with triggers queued: each queued one gets an ERROR verdict, none is lost."""
    h = Harness(make_daemon(tmp_path, "cycle.queue_depth=4"))
    h.start()
    for cam in ("cam0", "cam1"):
        h.camera(cam).inject_fault("timeout", count=10)
    ids = [request(h.command, {"command": "inspect"}, 5)["result"]["inspection_id"]
           for _ in range(4)]
    h.daemon.stop()
    h.thread.join(15)
    h.pump(300)
    assert set(ids) <= set(h.verdicts)
    assert all(h.verdicts[i]["verdict"] == "ERROR" for i in ids)
    assert any("shutting down" in " ".join(h.verdicts[i]["reasons"]) for i in ids)
    h.sub.close()
    h.ctx.term()


def test_cycle_timeout_is_an_error(tmp_path: Path) -> None:
    """A cycle over cycle.cycle_timeout_s is answered ERROR; its late result is discarded."""
    h = Harness(make_daemon(tmp_path, "cycle.cycle_timeout_s=0.05"))
    h.start()
    try:
        header = h.inspect()
        assert header["verdict"] == "ERROR"
        assert "cycle.cycle_timeout_s" in header["reasons"][0]
        # The daemon reports the abandoned cycle as a problem until its late result has come
        # back and been discarded: wait for exactly that, then nothing more may be recorded.
        stuck = "a cycle exceeded cycle.cycle_timeout_s and has not returned"

        def late_result_discarded() -> bool:
            status = request(h.command, {"command": "status"}, 5)["result"]
            return stuck not in status["problems"] and status["queue"]["in_flight"] == 0

        h.wait_for(late_result_discarded, 60, "the late result to come back and be discarded")
        counts = request(h.command, {"command": "status"}, 5)["result"]["counts"]
        assert counts == {"PASS": 0, "FAIL": 0, "ERROR": 1}
    finally:
        h.stop()


def test_refused_calibration_makes_every_inspection_error(tmp_path: Path) -> None:
    """With refuse_reasons set (stale calibration + refuse_stale), verdicts are ERROR."""
    h = Harness(make_daemon(tmp_path))
    h.daemon.calibration.refuse_reasons.append("calibration X is 40 days old")
    h.start()
    try:
        header = h.inspect()
        assert header["verdict"] == "ERROR" and "40 days old" in header["reasons"][0]
        status = request(h.command, {"command": "status"}, 5)["result"]
        assert status["state"] == "degraded"
        assert any("40 days old" in p for p in status["problems"])
    finally:
        h.stop()


def test_every_grabbed_frame_leaves_a_preview_jpeg(harness: Harness) -> None:
    """Each verdict leaves one downscaled JPEG per camera where store.preview_path says
    (storage.preview_px, for the HMI), and its encoding time is in timings_ms."""
    import cv2
    import numpy as np

    from station.store import preview_path

    header = harness.inspect("PREVIEW")
    assert "preview" in header["timings_ms"]
    for cam in header["cameras"]:
        path = harness.daemon.data_dir / preview_path(
            header["inspection_id"], header["started_at"], cam["camera"])
        img = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None  # the sample tiles are under 1024 px: kept at their size
        assert img.shape[:2] == (cam["height"], cam["width"])


class GatedRig:
    """The daemon's camera rig behind a gate: ``acquire`` waits until the test opens it, so a
    cycle can be held in flight for as long as a test needs (no timing races)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cameras = inner.cameras
        self.entered = threading.Event()
        self.gate = threading.Event()

    def acquire(self, timeout_s: float | None = None) -> Any:
        self.entered.set()
        self.gate.wait()
        return self.inner.acquire(timeout_s)

    def health(self) -> Any:
        return self.inner.health()

    def close(self) -> None:
        self.gate.set()
        self.inner.close()


def gated(tmp_path: Path, *overrides: str) -> tuple[Harness, GatedRig]:
    daemon = make_daemon(tmp_path, *overrides)
    rig = GatedRig(daemon.rig)
    daemon.rig = rig
    return Harness(daemon), rig


def test_unconfirmed_lights_off_is_an_error_event_and_problem(harness: Harness) -> None:
    """The controller swallows the all-off after the grab: that part is ERROR naming the
    lights, a lights_fault event is published, status shows the problem until the guard has
    the lights confirmed off, then lights_recovered."""
    harness.inspect()  # intensities are known now: the next on() is two requests
    sim = harness.lights.simulator
    sim.set_fault("no_reply", after=2)  # L1 and L2 pass; the all-off and its retries vanish
    header = harness.inspect("STUCK")
    assert header["verdict"] == "ERROR"
    assert any("lights did not switch off after the grab" in r for r in header["reasons"])
    assert sim.lit_channels(), "the simulator should still be lit"
    def cycle_fault() -> bool:  # under load the on-time guard may publish its own first
        return any(e["kind"] == "lights_fault" and "inspection_id" in e["data"]
                   for e in harness.events)

    harness.wait_for(cycle_fault, 10, "the cycle's lights_fault event")
    fault = next(e for e in harness.events
                 if e["kind"] == "lights_fault" and "inspection_id" in e["data"])
    assert fault["data"]["inspection_id"] == header["inspection_id"]
    assert fault["data"]["during"] == "off" and "all-off not confirmed" in fault["data"]["reason"]
    status = request(harness.command, {"command": "status"}, 5)["result"]
    assert status["state"] == "degraded"
    assert any(p.startswith("lights may be on") for p in status["problems"]), status
    sim.set_fault("none")
    harness.wait_for(lambda: any(e["kind"] == "lights_recovered" for e in harness.events), 15,
                     "lights_recovered")
    assert not sim.lit_channels()
    status = request(harness.command, {"command": "status"}, 5)["result"]
    assert not any(p.startswith("lights may be on") for p in status["problems"]), status
    assert harness.inspect()["verdict"] in ("PASS", "FAIL")


def test_lights_failing_to_switch_on_publish_an_event(harness: Harness) -> None:
    """A lights fault at switch-on is an ERROR and a lights_fault event for that inspection."""
    harness.lights.simulator.set_fault("no_reply")
    header = harness.inspect()
    assert header["verdict"] == "ERROR"
    harness.wait_for(
        lambda: any(e["kind"] == "lights_fault"
                    and e["data"].get("inspection_id") == header["inspection_id"]
                    for e in harness.events), 10, "the lights_fault event")
    harness.lights.simulator.set_fault("none")


def test_jobs_queued_behind_a_stuck_cycle_are_answered(tmp_path: Path) -> None:
    """A cycle stuck past cycle.cycle_timeout_s: it is answered ERROR, the jobs queued behind
    it too (they would never run), a new trigger is answered at once; each gets one verdict."""
    h, rig = gated(tmp_path, "cycle.cycle_timeout_s=3", "cycle.queue_depth=4")
    h.start()
    try:
        first = request(h.command, {"command": "inspect"}, 5)["result"]["inspection_id"]
        assert rig.entered.wait(10)
        second = request(h.command, {"command": "inspect"}, 5)["result"]["inspection_id"]
        h.wait_for(lambda: {first, second} <= set(h.verdicts), 15, "both verdicts")
        assert "cycle.cycle_timeout_s" in h.verdicts[first]["reasons"][0]
        assert "previous cycle is stuck" in h.verdicts[second]["reasons"][0]
        third = h.inspect("T3")
        assert third["verdict"] == "ERROR" and "stuck" in third["reasons"][0]
        rig.gate.set()  # the stuck cycle returns; its late result is discarded
        h.wait_for(lambda: request(h.command, {"command": "status"}, 5)["result"]["queue"][
            "in_flight"] == 0, 15, "the worker to return")
        assert h.inspect("T4")["verdict"] in ("PASS", "FAIL")
        h.pump(300)
        counts = request(h.command, {"command": "status"}, 5)["result"]["counts"]
        assert counts["ERROR"] == 3 and counts["PASS"] + counts["FAIL"] == 1, counts
        assert len(h.verdicts) == 4  # one verdict each, the discarded late one not among them
    finally:
        h.stop()


def test_inspect_during_shutdown_is_answered(tmp_path: Path) -> None:
    """After SIGTERM (stop), while the cycle in flight finishes, an inspect is answered
    SHUTTING_DOWN and a ping still answered; the cycle in flight gets its one verdict."""
    h, rig = gated(tmp_path, "cycle.shutdown_timeout_s=5")
    h.start()
    inflight = request(h.command, {"command": "inspect"}, 5)["result"]["inspection_id"]
    assert rig.entered.wait(10)
    h.daemon.stop()
    reply = request(h.command, {"command": "inspect", "wait": True, "request_id": "late"}, 5)
    assert reply["ok"] is False and reply["error"]["code"] == "SHUTTING_DOWN"
    assert reply["request_id"] == "late"
    assert request(h.command, {"command": "ping"}, 5)["ok"]
    rig.gate.set()
    h.thread.join(15)
    assert not h.thread.is_alive()
    h.pump(300)
    assert inflight in h.verdicts
    h.sub.close()
    h.ctx.term()


def test_interrupted_triggers_are_closed_at_start(tmp_path: Path) -> None:
    """Triggers a crash left accepted but unfinished are ERROR "interrupted by a restart" at
    the next start: recorded, published, counted, never run."""
    from station.store import Store

    store = Store(tmp_path / "data")
    store.accept("20261122T100000000-dead", "P-LOST", "2026-11-22T10:00:00.000+00:00")
    store.close()
    h = Harness(make_daemon(tmp_path))
    h.start()
    try:
        rows = h.daemon.store.history(5)
        assert [(r.id, r.part_id, r.verdict) for r in rows] == [
            ("20261122T100000000-dead", "P-LOST", "ERROR")]
        assert rows[0].reasons[0].startswith("interrupted by a restart")
        assert rows[0].started_at == "2026-11-22T10:00:00.000+00:00"
        assert h.daemon.store.unfinished() == []
    finally:
        h.stop()


def test_signal_handler_only_sets_flags(tmp_path: Path) -> None:
    """SIGTERM's handler does not log: it may run inside a log write holding the logger's lock
    (a SIGTERM during the "station ready" line once hung the daemon); serve() logs it."""
    import signal

    from structlog.testing import capture_logs

    daemon = make_daemon(tmp_path)
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        daemon.install_signal_handlers()
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        with capture_logs() as logs:
            handler(signal.SIGTERM, None)
        assert logs == [] and daemon._stop.is_set()
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)
        daemon.abort()


def test_port_vanishing_mid_cycle_is_answered_at_once(tmp_path: Path) -> None:
    """The controller's port vanishes while the lights are on for the grab: the waiting
    inspect is answered ERROR naming the lights (not left hanging), status shows the problem,
    and once the port is back the guard confirms the lights off and the problem clears."""
    h, rig = gated(tmp_path)
    h.start()
    try:
        replies: list[dict[str, Any]] = []
        waiter = threading.Thread(target=lambda: replies.append(
            request(h.command, {"command": "inspect", "wait": True}, 60)))
        waiter.start()
        assert rig.entered.wait(10)  # lights on, the grab held
        h.lights.simulator.set_fault("port_closed")
        rig.gate.set()
        waiter.join(30)
        assert replies, "the inspection was not answered"
        header = replies[0]["result"]
        assert header["verdict"] == "ERROR"
        assert any("lights did not switch off" in r for r in header["reasons"]), header
        status = request(h.command, {"command": "status"}, 5)["result"]
        assert any(p.startswith("lights may be on") for p in status["problems"]), status
        h.lights.simulator.set_fault("none")  # replugged: a fresh port, the guard gets through
        h.wait_for(lambda: not any(
            p.startswith("lights may be on")
            for p in request(h.command, {"command": "status"}, 5)["result"]["problems"]),
            30, "the lights confirmed off")
        h.wait_for(lambda: any(e["kind"] == "lights_recovered" for e in h.events), 10,
                   "lights_recovered")
    finally:
        h.stop()


def test_odd_event_data_and_a_failing_turn_do_not_stop_the_daemon(harness: Harness) -> None:
    """A driver event carrying values JSON cannot hold is published cleaned; an exception in a
    turn of the main loop is logged and the daemon serves on."""
    harness.daemon.event("odd", {"obj": object(), "nan": float("nan"), "text": "\ud800"})
    harness.wait_for(lambda: any(e["kind"] == "odd" for e in harness.events), 10, "the event")
    odd = next(e for e in harness.events if e["kind"] == "odd")
    assert odd["data"] == {"obj": "<object>", "nan": None, "text": "\\ud800"}
    calls = {"n": 0}
    real = harness.daemon._check_cycle_timeout

    def flaky() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in one turn")
        real()

    harness.daemon._check_cycle_timeout = flaky  # type: ignore[method-assign]
    harness.wait_for(lambda: calls["n"] >= 2, 10, "the next turn")
    assert request(harness.command, {"command": "ping"}, 5)["ok"]
    assert harness.thread.is_alive()


# --- two stages: part N+1 acquired while part N is inferred -----------------------------------


class Steps:
    """Counts calls and holds call k on a gate until the test opens it (no clock races)."""

    def __init__(self) -> None:
        self.calls = 0
        self.cond = threading.Condition()
        self.holds: dict[int, threading.Event] = {}
        self.delay: Any = lambda k: 0.0

    def hold(self, k: int) -> threading.Event:
        """The gate call ``k`` (1-based) waits on."""
        return self.holds.setdefault(k, threading.Event())

    def step(self) -> None:
        with self.cond:
            self.calls += 1
            k = self.calls
            self.cond.notify_all()
        gate = self.holds.get(k)
        if gate is not None:
            gate.wait()
        time.sleep(self.delay(k))

    def open_all(self) -> None:
        for gate in self.holds.values():
            gate.set()


class StepRig(Steps):
    """The daemon's camera rig, every acquisition counted (and holdable)."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner
        self.cameras = inner.cameras

    def acquire(self, timeout_s: float | None = None) -> Any:
        self.step()
        return self.inner.acquire(timeout_s)

    def health(self) -> Any:
        return self.inner.health()

    def close(self) -> None:
        self.open_all()
        self.inner.close()


class StepInspector(Steps):
    """The daemon's Inspector, every inference counted (and holdable)."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner

    @property
    def model_info(self) -> dict[str, object]:
        info: dict[str, object] = self.inner.model_info
        return info

    def inspect(self, *args: Any, **kwargs: Any) -> Any:
        self.step()
        return self.inner.inspect(*args, **kwargs)


def stepped(tmp_path: Path, *overrides: str) -> tuple[Harness, StepRig, StepInspector]:
    daemon = make_daemon(tmp_path, *overrides)
    rig, inspector = StepRig(daemon.rig), StepInspector(daemon.inspector)
    daemon.rig, daemon.inspector = rig, inspector
    return Harness(daemon), rig, inspector


def trigger(h: Harness, part: str) -> str:
    """inspect without waiting; the inspection id."""
    reply = request(h.command, {"command": "inspect", "part_id": part}, 5)
    assert reply["ok"], reply
    return str(reply["result"]["inspection_id"])


def test_part_n_plus_1_is_acquired_while_part_n_is_inferred(tmp_path: Path) -> None:
    """Inference of part 1 held: part 2 is acquired meanwhile (lights, cameras) and waits
    between the stages; once inference goes on both verdicts come, in trigger order, part 2
    saying how long it waited."""
    h, rig, inspector = stepped(tmp_path)
    hold = inspector.hold(1)
    h.start()
    try:
        first = trigger(h, "P1")
        second = trigger(h, "P2")
        h.wait_for(lambda: rig.calls == 2 and inspector.calls == 1, 30,
                   "part 2 acquired while part 1 is inferred")
        h.wait_for(lambda: request(h.command, {"command": "status"}, 5)["result"]["queue"][
            "between_stages"] == 1, 30, "part 2 waiting between the stages")
        status = request(h.command, {"command": "status"}, 5)["result"]
        assert status["queue"]["in_flight"] == 2
        assert not h.verdicts
        hold.set()
        h.wait_for(lambda: {first, second} <= set(h.verdicts), 60, "both verdicts")
        assert h.published == [first, second]
        assert all(h.verdicts[i]["verdict"] in ("PASS", "FAIL") for i in (first, second))
        assert h.verdicts[second]["timings_ms"]["wait"] > 0
        assert "acquire" in h.verdicts[second]["timings_ms"]
    finally:
        h.stop()


def test_verdicts_keep_trigger_order_whatever_the_stage_times(tmp_path: Path) -> None:
    """Eight parts with acquisition and inference times varying at random (fixed seed, up
    to 30 ms extra each): every verdict once, in trigger order."""
    import random

    h, rig, inspector = stepped(tmp_path, "cycle.queue_depth=8", "cycle.pipeline_depth=2")
    rng = random.Random(7)
    extra = {(who, k): rng.uniform(0, 0.03) for who in ("rig", "inf") for k in range(1, 9)}
    rig.delay = lambda k: extra.get(("rig", k), 0.0)
    inspector.delay = lambda k: extra.get(("inf", k), 0.0)
    h.start()
    try:
        ids = [trigger(h, f"R{i}") for i in range(8)]
        h.wait_for(lambda: set(ids) <= set(h.verdicts), 120, "eight verdicts")
        assert h.published == ids
        assert all(h.verdicts[i]["verdict"] in ("PASS", "FAIL") for i in ids)
    finally:
        h.stop()


def test_a_fault_acquiring_part_n_plus_1_while_n_is_inferred(tmp_path: Path) -> None:
    """cam0 delivers incomplete frames (twice: no retry helps) for part 2 while part 1 is
    held in inference: part 1 is judged, part 2 is ERROR naming the camera (published after
    part 1, never inferred), part 3 is judged; in trigger order."""
    h, rig, inspector = stepped(tmp_path, "cycle.queue_depth=4")
    hold = inspector.hold(1)
    h.start()
    try:
        first = trigger(h, "F1")
        h.wait_for(lambda: inspector.calls == 1, 30, "part 1 in inference")
        h.camera("cam0").inject_fault("incomplete", count=2)
        second = trigger(h, "F2")
        third = trigger(h, "F3")
        h.wait_for(lambda: rig.calls == 2, 30, "part 2 acquired")
        h.wait_for(lambda: request(h.command, {"command": "status"}, 5)["result"]["queue"][
            "between_stages"] == 1, 30, "part 2's ERROR waiting between the stages")
        assert not h.verdicts  # part 2's ERROR waits for part 1's verdict
        hold.set()
        h.wait_for(lambda: {first, second, third} <= set(h.verdicts), 60, "three verdicts")
        assert h.published == [first, second, third]
        assert h.verdicts[first]["verdict"] in ("PASS", "FAIL")
        bad = h.verdicts[second]
        assert bad["verdict"] == "ERROR"
        assert bad["reasons"][0].startswith("cameras: camera cam0: frame") \
            and "incomplete twice" in bad["reasons"][0], bad["reasons"]
        assert h.verdicts[third]["verdict"] in ("PASS", "FAIL")
        assert inspector.calls == 2  # part 2 was never inferred
    finally:
        h.stop()


def _only_sentinel_left(h: Harness) -> bool:
    """Shutdown has answered the queued jobs (only its sentinel is left in the queue)."""
    return list(h.daemon._jobs.queue) == [None]


def test_shutdown_drains_both_busy_stages(tmp_path: Path) -> None:
    """Stop while part 1 is in inference and part 2 in acquisition, part 3 queued: part 3 is
    aborted, parts 1 and 2 finish within cycle.shutdown_timeout_s; one verdict each, in
    trigger order."""
    h, rig, inspector = stepped(tmp_path, "cycle.queue_depth=4", "cycle.shutdown_timeout_s=30")
    infer_1, acquire_2 = inspector.hold(1), rig.hold(2)
    h.start()
    ids = [trigger(h, f"S{i}") for i in (1, 2, 3)]
    h.wait_for(lambda: inspector.calls == 1 and rig.calls == 2, 30, "both stages busy")
    h.daemon.stop()
    h.wait_for(lambda: _only_sentinel_left(h), 30, "the queued part answered")
    infer_1.set()
    acquire_2.set()
    h.thread.join(60)
    assert not h.thread.is_alive()
    h.pump(300)
    assert h.published == ids  # each once, in order
    assert h.verdicts[ids[0]]["verdict"] in ("PASS", "FAIL")
    assert h.verdicts[ids[1]]["verdict"] in ("PASS", "FAIL")
    assert h.verdicts[ids[2]]["reasons"] == ["aborted: the station is shutting down"]
    h.sub.close()
    h.ctx.term()


def test_shutdown_errors_both_stages_that_do_not_finish(tmp_path: Path) -> None:
    """Stop while both stages stay busy past cycle.shutdown_timeout_s: the two parts in the
    stages are ERROR "did not finish", the queued one "shutting down"; one verdict each, in
    trigger order; the stages' late results are discarded."""
    h, rig, inspector = stepped(tmp_path, "cycle.queue_depth=4", "cycle.shutdown_timeout_s=0.5")
    infer_1, acquire_2 = inspector.hold(1), rig.hold(2)
    h.start()
    try:
        ids = [trigger(h, f"A{i}") for i in (1, 2, 3)]
        h.wait_for(lambda: inspector.calls == 1 and rig.calls == 2, 30, "both stages busy")
        h.daemon.stop()
        h.thread.join(60)
        assert not h.thread.is_alive()
        h.pump(300)
        assert h.published == ids
        assert [h.verdicts[i]["reasons"] for i in ids] == [
            ["aborted: the cycle did not finish at shutdown"]] * 2 + [
            ["aborted: the station is shutting down"]]
        from station.store import Store

        store = Store(tmp_path / "data")  # the daemon's is closed
        assert store.counts()["ERROR"] == 3 and store.unfinished() == []
        store.close()
    finally:
        infer_1.set()
        acquire_2.set()
        h.sub.close()
        h.ctx.term()


def test_a_stuck_inference_answers_the_part_waiting_behind_it(tmp_path: Path) -> None:
    """Part 1 stuck in inference past cycle.cycle_timeout_s: it is answered ERROR, and part
    2, acquired and waiting behind it, too (it could not finish); in order. When the stuck
    stage returns, both late results are discarded and part 3 is judged."""
    h, rig, inspector = stepped(tmp_path, "cycle.cycle_timeout_s=1")
    hold = inspector.hold(1)
    h.start()
    try:
        first = trigger(h, "T1")
        h.wait_for(lambda: inspector.calls == 1, 30, "part 1 in inference")
        second = trigger(h, "T2")
        h.wait_for(lambda: {first, second} <= set(h.verdicts), 30, "both answered")
        assert h.published == [first, second]
        assert "cycle.cycle_timeout_s" in h.verdicts[first]["reasons"][0]
        assert h.verdicts[second]["reasons"][0].startswith(
            "not finished: the previous cycle is stuck")
        assert rig.calls == 2  # part 2 had been acquired
        hold.set()

        def returned() -> bool:
            q = request(h.command, {"command": "status"}, 5)["result"]
            return q["queue"]["in_flight"] == 0 and not any(
                "has not returned" in p for p in q["problems"])

        h.wait_for(returned, 30, "the stages to return")
        third = h.inspect("T3")
        assert third["verdict"] in ("PASS", "FAIL")
        h.pump(300)
        assert h.published == [first, second, third["inspection_id"]]
    finally:
        h.stop()


# --- hardware trigger: the line triggers the cameras, the daemon pairs their frames -----------

LINE = ("cycle.trigger=hardware", "cameras.0.replay.trigger=external",
        "cameras.1.replay.trigger=external", "cycle.pair_window_ms=50",
        "cycle.pair_timeout_ms=300")


def line_harness(tmp_path: Path, *overrides: str) -> Harness:
    h = Harness(make_daemon(tmp_path, *LINE, *overrides))
    h.start()
    return h


def test_line_triggered_frames_are_paired_into_one_part(tmp_path: Path) -> None:
    """Both cameras' frames of one line pulse, 3 ms apart: one verdict for the pair, its
    skew in timings_ms and in the store; the lights are not switched; inspect is refused."""
    h = line_harness(tmp_path)
    try:
        reply = request(h.command, {"command": "inspect", "request_id": "r"}, 5)
        assert reply["ok"] is False and reply["error"]["code"] == "HARDWARE_TRIGGER"
        assert "cycle.trigger: hardware" in reply["error"]["message"]
        now = time.time_ns()
        assert h.camera("cam0").pulse(at_ns=now)
        assert h.camera("cam1").pulse(at_ns=now + 3_000_000)
        h.wait_for(lambda: len(h.verdicts) == 1, 60, "the pair's verdict")
        (header,) = h.verdicts.values()
        assert header["verdict"] in ("PASS", "FAIL"), header["reasons"]
        assert header["timings_ms"]["skew"] == 3.0
        assert [c["frame_id"] for c in header["cameras"]] == [0, 0]
        assert "lights_on" not in header["timings_ms"]
        stored = h.daemon.store.header(header["inspection_id"])
        assert stored is not None and stored["timings_ms"]["skew"] == 3.0
        row = h.daemon.store._db.execute("SELECT timings FROM inspections WHERE id = ?",
                                         (header["inspection_id"],)).fetchone()
        assert json.loads(row[0])["skew"] == 3.0
        assert not h.lights.simulator.lit_channels()
    finally:
        h.stop()


def test_a_missing_partner_is_an_error_naming_the_camera(tmp_path: Path) -> None:
    """Only cam0's line fires: after cycle.pair_timeout_ms the part is one ERROR verdict
    naming cam1; the next pulse of both is a good part."""
    h = line_harness(tmp_path)
    try:
        h.camera("cam0").pulse()
        h.wait_for(lambda: len(h.verdicts) == 1, 60, "the lone frame's verdict")
        (lone,) = h.verdicts.values()
        assert lone["verdict"] == "ERROR"
        assert lone["reasons"][0].startswith(
            "cameras: missing partner: no frame from cam1 within cycle.pair_timeout_ms = "
            "300.0 ms of cam0's frame 0"), lone["reasons"]
        assert [c["frame_id"] for c in lone["cameras"]] == [0, None]
        assert "skew" not in lone["timings_ms"]
        now = time.time_ns()
        h.camera("cam0").pulse(at_ns=now)
        h.camera("cam1").pulse(at_ns=now)
        h.wait_for(lambda: len(h.verdicts) == 2, 60, "the next part")
        assert h.verdicts[h.published[1]]["verdict"] in ("PASS", "FAIL")
    finally:
        h.stop()


def test_skew_beyond_the_window_is_one_error_with_the_skew(tmp_path: Path) -> None:
    """After a good pair, cam1's frame of the next trigger arrives 80 ms after cam0's (window
    50 ms): one ERROR verdict for that trigger, naming and recording the skew."""
    h = line_harness(tmp_path)
    try:
        now = time.time_ns()
        h.camera("cam0").pulse(at_ns=now)
        h.camera("cam1").pulse(at_ns=now)
        h.wait_for(lambda: len(h.verdicts) == 1, 60, "the good pair")
        now = time.time_ns()
        h.camera("cam0").pulse(at_ns=now)
        h.camera("cam1").pulse(at_ns=now + 80_000_000)
        h.wait_for(lambda: len(h.verdicts) == 2, 60, "the skewed part")
        late = h.verdicts[h.published[1]]
        assert late["verdict"] == "ERROR"
        assert "arrived 80.0 ms apart, beyond cycle.pair_window_ms = 50.0 ms" in \
            late["reasons"][0], late["reasons"]
        assert late["timings_ms"]["skew"] == 80.0
        assert [c["frame_id"] for c in late["cameras"]] == [1, 1]
        h.pump(300)
        assert len(h.published) == 2  # one verdict per trigger
    finally:
        h.stop()


def test_shutdown_answers_a_frame_waiting_for_its_partner(tmp_path: Path) -> None:
    """A frame still waiting for its partner when the station stops becomes one ERROR
    verdict (aborted), never dropped in silence."""
    h = line_harness(tmp_path, "cycle.pair_timeout_ms=60000")
    h.camera("cam0").pulse()
    h.wait_for(lambda: h.daemon._pairer is not None and h.daemon._pairer.waiting() == 1, 30,
               "the frame to wait for its partner")
    h.daemon.stop()
    h.thread.join(15)
    assert not h.thread.is_alive()
    h.pump(300)
    (header,) = h.verdicts.values()
    assert header["verdict"] == "ERROR"
    assert header["reasons"] == ["aborted: the station is shutting down"]
    h.sub.close()
    h.ctx.term()
