"""The daemon's line side, in-process with real parts (replay cameras, light simulator, the
default model, real sockets, SQLite): CURVE roles on both sockets, result, history, reload,
and the OPC UA server driven by a real asyncua client while cycles run."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
import zmq
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from config import StationConfig, load_config
from station.app import build_daemon
from station.calibration.store import (
    CalibrationRecord,
    CameraRecord,
    new_calibration_id,
    save_calibration,
)
from station.daemon import Daemon
from station.keys import (
    Layout,
    client_pair,
    make_curve_pair,
    make_opcua_certificate,
    server_pair,
    set_user,
    trust_certificate,
)
from station.messaging.client import NoAnswer, request
from station.messaging.curve import ClientCurve, load_key_pair, load_public_key, make_client
from station.opcua import nodes
from tests.e2e.conftest import free_port

PASSWORD = "line-password-1"
SAMPLES = str(Path(__file__).resolve().parents[2] / "config" / "samples" / "*.jpg")


def cameras(timeout_s: float = 2.0) -> list[dict[str, Any]]:
    return [{"name": n, "backend": "replay", "timeout_s": timeout_s, "mm_per_px": 0.1,
             "replay": {"images": [SAMPLES], "pixel_format": "Mono8"}} for n in ("cam0", "cam1")]
CLIENT_URI = "urn:test:plc"


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class GatedRig:
    """The real camera rig behind a gate the test opens: a cycle in flight on demand."""

    def __init__(self, rig: Any) -> None:
        self.rig = rig
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()

    def acquire(self, timeout_s: float | None = None) -> Any:
        self.waiting.set()
        self.gate.wait(60)
        self.waiting.clear()
        return self.rig.acquire(timeout_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rig, name)


class Line:
    """A daemon with CURVE and OPC UA on, serving in a thread; keys for every role."""

    def __init__(self, root: Path) -> None:
        self.layout = Layout(root / "keys")
        server_pair(self.layout)
        self.keys: dict[str, ClientCurve] = {}
        server_public = load_public_key(self.layout.server_public)
        for name, role in (("plc1", "plc"), ("hmi1", "hmi"), ("ops", "admin")):
            secret, _ = client_pair(self.layout, name, role)
            self.keys[name] = ClientCurve(load_key_pair(secret), server_public)
        make_curve_pair(self.layout.clients, "stranger")
        self.keys["stranger"] = ClientCurve(
            load_key_pair(self.layout.clients / "stranger.key_secret"), server_public)
        lay = self.layout
        make_opcua_certificate(lay.opcua_cert, lay.opcua_key, "urn:inspection-station:line-t",
                               ["127.0.0.1"], "line-t")
        self.client_cert = lay.opcua_clients / "plc-cert.der"
        self.client_key = lay.opcua_clients / "plc-key.pem"
        make_opcua_certificate(self.client_cert, self.client_key, CLIENT_URI, ["localhost"],
                               "plc", client=True)
        trust_certificate(self.client_cert, lay.opcua_trusted)
        set_user(lay.opcua_users, "plc", PASSWORD)
        self.config_file = root / "station.yaml"
        self.command = f"tcp://127.0.0.1:{free_port()}"
        self.publish = f"tcp://127.0.0.1:{free_port()}"
        self.opcua = f"opc.tcp://127.0.0.1:{free_port()}/station"
        self.write_config({})
        cfg = self.load()
        self.data_dir = root / "data"
        self.daemon = build_daemon(cfg, self.data_dir, config_loader=self.load)
        self.gated = GatedRig(self.daemon.rig)
        self.daemon._acquirer = lambda: self.gated  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.daemon.serve, name="daemon")

    def write_config(self, extra: dict[str, Any]) -> None:
        lay = self.layout
        doc: dict[str, Any] = {
            "version": 1, "name": "line-t", "cameras": cameras(),
            "messaging": {
                "command": self.command, "publish": self.publish, "status_interval_s": 0.2,
                "curve": {"enabled": True, "server_secret_key": str(lay.server_secret),
                          "plc_keys": str(lay.role_dir("plc")),
                          "hmi_keys": str(lay.role_dir("hmi")),
                          "admin_keys": str(lay.role_dir("admin"))},
            },
            "opcua": {"enabled": True, "endpoint": self.opcua,
                      "certificate": str(lay.opcua_cert), "private_key": str(lay.opcua_key),
                      "trust_dir": str(lay.opcua_trusted), "users_file": str(lay.opcua_users)},
            "lights": {"backend": "simulator", "settle_ms": 0},
        }
        for key, value in extra.items():
            doc[key] = value
        self.config_file.write_text(yaml.safe_dump(doc))

    def load(self) -> StationConfig:
        return load_config(str(self.config_file), [], env={})

    def ask(self, who: str | None, payload: dict[str, Any], timeout_s: float = 60
            ) -> dict[str, Any]:
        return request(self.command, payload, timeout_s, self.keys[who] if who else None)

    def start(self) -> None:
        self.daemon.start()
        self.thread.start()

    def stop(self) -> None:
        self.gated.gate.set()
        self.daemon.stop()
        self.thread.join(20)
        assert not self.thread.is_alive(), "daemon did not stop"


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Line]:
    lt = Line(tmp_path_factory.mktemp("line"))
    lt.start()
    yield lt
    lt.stop()


# --- CURVE ------------------------------------------------------------------------------------


def test_roles_on_the_command_socket(line: Line) -> None:
    """A PLC key inspects and reads results but may not reload; an HMI key reads history but
    may not inspect; an admin key may do all; the refusals are FORBIDDEN with the fix."""
    header = line.ask("plc1", {"command": "inspect", "part_id": "R-1", "wait": True})["result"]
    assert header["verdict"] in ("PASS", "FAIL")
    reply = line.ask("plc1", {"command": "reload", "request_id": "r1"})
    assert (reply["ok"], reply["error"]["code"], reply["request_id"]) == (False, "FORBIDDEN",
                                                                          "r1")
    assert "admin_keys" in reply["error"]["message"]
    reply = line.ask("hmi1", {"command": "inspect"})
    assert reply["error"]["code"] == "FORBIDDEN"
    assert line.ask("hmi1", {"command": "history", "limit": 1})["ok"]
    assert line.ask("ops", {"command": "status"})["ok"]
    assert line.ask("plc1", {"command": "result",
                             "inspection_id": header["inspection_id"]})["ok"]


def test_unknown_key_and_plain_text_get_no_answer(line: Line) -> None:
    """A key in no role folder and a client without CURVE get nothing at all."""
    with pytest.raises(NoAnswer):
        line.ask("stranger", {"command": "ping"}, timeout_s=1.5)
    with pytest.raises(NoAnswer):
        line.ask(None, {"command": "ping"}, timeout_s=1.5)
    assert line.ask("plc1", {"command": "ping"})["ok"]


def test_publish_socket_serves_hmi_not_plc(line: Line) -> None:
    """An HMI key receives publications; a PLC key (no subscribe role) receives none."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    socks = {}
    for who in ("hmi1", "plc1"):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SUBSCRIBE, b"status")
        make_client(s, line.keys[who])
        s.connect(line.publish)
        socks[who] = s
    try:
        assert socks["hmi1"].poll(30_000), "no status reached the HMI subscriber"
        assert socks["hmi1"].recv_multipart()[0] == b"status"
        assert not socks["plc1"].poll(1000)  # 5 status periods: none got through
    finally:
        for s in socks.values():
            s.close()


# --- result and history ----------------------------------------------------------------------


def test_result_done_unknown_running_and_queued(line: Line) -> None:
    """result: an id in flight is 'running', one behind it 'queued', both 'done' with their
    stored header afterwards; an id never accepted is NOT_FOUND."""
    line.gated.gate.clear()
    try:
        first = line.ask("plc1", {"command": "inspect", "part_id": "Q-1"})["result"]
        assert line.gated.waiting.wait(30)
        second = line.ask("plc1", {"command": "inspect", "part_id": "Q-2"})["result"]
        for inspection_id, state in ((first["inspection_id"], "running"),
                                     (second["inspection_id"], "queued")):
            reply = line.ask("plc1", {"command": "result", "inspection_id": inspection_id})
            assert reply["result"] == {"inspection_id": inspection_id, "state": state}
    finally:
        line.gated.gate.set()
    for done in (first, second):
        def finished(iid: str = done["inspection_id"]) -> bool:
            reply = line.ask("plc1", {"command": "result", "inspection_id": iid})
            return bool(reply["result"]["state"] == "done")
        wait_for(finished, 60, "the verdict")
        reply = line.ask("plc1", {"command": "result", "inspection_id": done["inspection_id"]})
        assert reply["result"]["verdict"]["part_id"] == done["part_id"]
    reply = line.ask("plc1", {"command": "result", "inspection_id": "20990101T000000000-beef"})
    assert reply["error"]["code"] == "NOT_FOUND"
    reply = line.ask("plc1", {"command": "result"})
    assert reply["error"]["code"] == "BAD_REQUEST"


def test_history_filters(line: Line) -> None:
    """history: newest first, by part id, by verdict, bounded; bad limits refused."""
    for part in ("H-1", "H-2", "H-1"):
        line.ask("plc1", {"command": "inspect", "part_id": part, "wait": True})
    rows = line.ask("hmi1", {"command": "history", "part_id": "H-1"})["result"]["inspections"]
    assert [r["part_id"] for r in rows] == ["H-1", "H-1"]
    assert rows[0]["started_at"] >= rows[1]["started_at"]
    rows = line.ask("hmi1", {"command": "history", "limit": 2})["result"]["inspections"]
    assert len(rows) == 2
    verdict = rows[0]["verdict"]
    rows = line.ask("hmi1", {"command": "history", "verdict": verdict, "limit": 1000}
                    )["result"]["inspections"]
    assert rows and {r["verdict"] for r in rows} == {verdict}
    for bad in (0, 1001, True, "5"):
        reply = line.ask("hmi1", {"command": "history", "limit": bad})
        assert reply["error"]["code"] == "BAD_REQUEST", bad


# --- reload ------------------------------------------------------------------------------------


def save_scale_calibration(line: Line, mm_per_px: float) -> str:
    cal_id = new_calibration_id()
    record = CalibrationRecord(
        calibration_id=cal_id, created=datetime.now(UTC), station="line-t",
        cameras={c: CameraRecord(mm_per_px=mm_per_px) for c in ("cam0", "cam1")},
    )
    save_calibration(line.data_dir / "calibration", record, {})
    return cal_id


def test_reload_good_then_bad_calibration(line: Line) -> None:
    """A new calibration takes effect with reload (no restart) and a cycle in flight finishes
    on the old set; a corrupt one is refused with the reason and the running set stays."""
    before = line.ask("ops", {"command": "status"})["result"]["calibration"]["calibration_id"]
    good = save_scale_calibration(line, 0.2)
    line.gated.gate.clear()
    try:
        in_flight = line.ask("plc1", {"command": "inspect", "part_id": "in-flight"})["result"]
        assert line.gated.waiting.wait(30)
        reply = line.ask("ops", {"command": "reload", "request_id": "good"}, timeout_s=120)
        assert reply["ok"], reply
        assert reply["request_id"] == "good"
        assert reply["result"]["calibration_id"] == good
        assert reply["result"]["warm_up_ms"] > 0
    finally:
        line.gated.gate.set()

    def verdict_of(iid: str) -> dict[str, Any]:
        wait_for(lambda: line.ask("plc1", {"command": "result", "inspection_id": iid}
                                  )["result"]["state"] == "done", 60, "the verdict")
        result: dict[str, Any] = line.ask("plc1", {"command": "result", "inspection_id": iid}
                                          )["result"]["verdict"]
        return result

    assert verdict_of(in_flight["inspection_id"])["calibration_id"] == before
    after = line.ask("plc1", {"command": "inspect", "wait": True})["result"]
    assert after["calibration_id"] == good
    # A corrupt calibration made current: refused, the running one stays.
    bad = save_scale_calibration(line, 0.3)
    (line.data_dir / "calibration" / bad / "calibration.json").write_text("{not json")
    reply = line.ask("ops", {"command": "reload"}, timeout_s=120)
    assert reply["error"]["code"] == "RELOAD_FAILED"
    assert bad in reply["error"]["message"] and "stays in force" in reply["error"]["message"]
    status = line.ask("ops", {"command": "status"})["result"]
    assert status["calibration"]["calibration_id"] == good
    assert line.ask("plc1", {"command": "inspect", "wait": True})["result"][
        "calibration_id"] == good
    (line.data_dir / "calibration" / "current").write_text(good + "\n")


def test_reload_refuses_a_bad_config_and_reports_restart_sections(line: Line) -> None:
    """A rules section the schema refuses: RELOAD_FAILED naming the key; a stricter rule and
    a changed cameras section: rules applied, cameras listed as needing a restart."""
    original = line.config_file.read_text()
    try:
        line.write_config({"rules": {"default": {"min_score": 7}}})
        reply = line.ask("ops", {"command": "reload"}, timeout_s=120)
        assert reply["error"]["code"] == "RELOAD_FAILED"
        assert "min_score" in reply["error"]["message"]
        cams = cameras(timeout_s=3.0)
        line.write_config({"rules": {"default": {"min_area_px": 1, "min_score": 0.0,
                                                 "max_count": 0}},
                           "cameras": cams})
        reply = line.ask("ops", {"command": "reload"}, timeout_s=120)
        assert reply["ok"], reply
        assert "cameras" in reply["result"]["restart_needed"]
        assert reply["result"]["rules"]["default"]["min_score"] == 0.0
    finally:
        line.config_file.write_text(original)
        assert line.ask("ops", {"command": "reload"}, timeout_s=120)["ok"]


# --- OPC UA ------------------------------------------------------------------------------------


async def opcua_client(line: Line) -> Client:
    c = Client(line.opcua, timeout=10)
    c.application_uri = CLIENT_URI
    await c.set_security(SecurityPolicyBasic256Sha256, certificate=str(line.client_cert),
                         private_key=str(line.client_key),
                         mode=ua.MessageSecurityMode.SignAndEncrypt)
    c.set_user("plc")
    c.set_password(PASSWORD)
    return c


def test_opcua_trigger_reads_its_verdict_while_zeromq_cycles_run(line: Line) -> None:
    """An asyncua client triggers a part on the running daemon and reads its verdict within
    the cycle time; meanwhile ZeroMQ triggers run cycles, and the server answers reads
    throughout; the verdict matches the stored one."""
    stop = threading.Event()
    zmq_ids: list[str] = []

    def zeromq_load() -> None:
        # A cycle, a pause, a cycle...: the OPC UA trigger gets in during a pause (a Trigger
        # while another channel's part is in the cycle is refused BadInvalidState).
        while not stop.is_set():
            reply = line.ask("plc1", {"command": "inspect", "part_id": "Z", "wait": True})
            if reply["ok"]:
                zmq_ids.append(reply["result"]["inspection_id"])
            stop.wait(0.3)

    async def main() -> tuple[str, list[Any], int]:
        async with await opcua_client(line) as c:
            ns = await c.get_namespace_index(nodes.NAMESPACE_URI)

            def node(name: str) -> Any:
                return c.get_node(ua.NodeId(name, ns))

            reads = 0
            deadline = time.monotonic() + line.daemon.cfg.cycle.cycle_timeout_s * 3
            inspection_id = None
            while inspection_id is None:  # the ZeroMQ load keeps the station busy at times
                assert time.monotonic() < deadline, "never Ready"
                if await node("Station.Ready").read_value():
                    try:
                        inspection_id = await node("Station").call_method(
                            ua.NodeId("Station.Trigger", ns), "OPC-1")
                    except ua.UaStatusCodeError as exc:
                        assert exc.code == ua.StatusCodes.BadInvalidState
                reads += 1
                await asyncio.sleep(0.02)
            t0 = time.monotonic()
            while await node("Station.LastVerdict.InspectionId").read_value() != inspection_id:
                reads += 1
                assert time.monotonic() - t0 < line.daemon.cfg.cycle.cycle_timeout_s
                await asyncio.sleep(0.02)
            values = await c.read_values([node(f"Station.LastVerdict.{f}") for f in (
                "Verdict", "PartId", "Json", "Sequence")])
            return inspection_id, values, reads

    loader = threading.Thread(target=zeromq_load)
    loader.start()
    try:
        inspection_id, (verdict, part_id, raw, sequence), reads = asyncio.run(main())
    finally:
        stop.set()
        loader.join(120)
    assert part_id == "OPC-1" and sequence >= 1 and reads > 1
    stored = line.ask("plc1", {"command": "result", "inspection_id": inspection_id}
                      )["result"]["verdict"]
    assert stored["verdict"] == verdict == json.loads(raw)["verdict"]
    assert zmq_ids, "no ZeroMQ cycle ran alongside"


def test_opcua_refuses_anonymous_and_a_wrong_password(line: Line) -> None:
    """On the running daemon: anonymous and a wrong password get no session."""

    async def attempt(user: str | None, password: str | None) -> None:
        c = await opcua_client(line)
        c._username = user  # what set_user/set_password set
        c._password = password
        with pytest.raises((ua.UaStatusCodeError, ua.UaError)):
            await c.connect()
        c.disconnect_socket()

    asyncio.run(attempt(None, None))
    asyncio.run(attempt("plc", "not-the-password"))


def test_status_lists_no_exposure_warning_with_curve(line: Line) -> None:
    """CURVE on: no 'beyond loopback without CURVE' problem (loopback endpoints anyway)."""
    problems = line.ask("ops", {"command": "status"})["result"]["problems"]
    assert not any("without CURVE" in p for p in problems)


def test_exposure_warning_in_status_without_curve(tmp_path: Path) -> None:
    """A command socket on 0.0.0.0 without CURVE: status carries the warning."""
    cfg = load_config("default", [
        f"messaging.command=tcp://0.0.0.0:{free_port()}",
        f"messaging.publish=tcp://127.0.0.1:{free_port()}"], env={})
    daemon: Daemon = build_daemon(cfg, tmp_path / "data")
    try:
        problems = daemon.status().problems
    finally:
        daemon.abort()
    assert any("0.0.0.0" in p and "without CURVE" in p for p in problems)
