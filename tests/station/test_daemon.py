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
