"""The OPC UA server on 127.0.0.1 with real asyncua clients, fed by plain functions (a line
double that accepts one trigger at a time), with certificates made by station.keys."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from config import StationConfig, load_config
from config.errors import ConfigError, StationError
from station.keys import (
    Layout,
    make_opcua_certificate,
    set_user,
    trust_certificate,
)
from station.opcua import nodes
from station.opcua.server import OpcUaServer, TriggerRefused
from tests.e2e.conftest import free_port

PASSWORD = "correct-horse-1"
CLIENT_URI = "urn:test:plc"

#: The node ids as published in docs/plc.md: a rename breaks every PLC program, so this list
#: is written out, not derived from station.opcua.nodes.
PUBLISHED_IDS = {
    "Station", "Station.Trigger", "Station.Name", "Station.Ready", "Station.Busy",
    "Station.LastVerdict", "Station.LastVerdict.Sequence", "Station.LastVerdict.InspectionId",
    "Station.LastVerdict.PartId", "Station.LastVerdict.Verdict",
    "Station.LastVerdict.VerdictCode", "Station.LastVerdict.Reasons",
    "Station.LastVerdict.StartedAt", "Station.LastVerdict.FinishedAt",
    "Station.LastVerdict.DurationMs", "Station.LastVerdict.DefectClasses",
    "Station.LastVerdict.DefectCounts", "Station.LastVerdict.DefectTotal",
    "Station.LastVerdict.ModelId", "Station.LastVerdict.CalibrationId",
    "Station.LastVerdict.Json", "Station.Counters", "Station.Counters.Pass",
    "Station.Counters.Fail", "Station.Counters.Error", "Station.Counters.Total",
    "Station.Counters.Yield", "Station.Status", "Station.Status.State",
    "Station.Status.Problems", "Station.Health", "Station.Health.CamerasConnected",
    "Station.Health.Cameras", "Station.Health.LightsConnected", "Station.Health.ModelId",
    "Station.Health.ModelTrained", "Station.Health.CalibrationId",
    "Station.Health.CalibrationAgeDays", "VerdictEventType",
}


@dataclass
class Line:
    """The daemon's side as plain functions: one inspection at a time."""

    busy: bool = False
    accepting: bool = True
    triggered: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: when set: trigger() signals ``entered`` and waits for ``release`` (a call in flight)
    hold: bool = False
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def trigger(self, part_id: str | None) -> str:
        if self.hold:
            self.entered.set()
            assert self.release.wait(30), "the test never released the held trigger"
        with self.lock:
            if not self.accepting:
                raise TriggerRefused("SHUTTING_DOWN", "stopping")
            if self.busy:
                raise TriggerRefused("BUSY", "an inspection is running")
            self.busy = True
            self.triggered.append(part_id)
            return f"INS-{len(self.triggered)}"

    def pending(self) -> tuple[bool, bool]:
        return self.busy, self.accepting


@dataclass
class Booth:
    """Keys, config and a running server."""

    layout: Layout
    cfg: StationConfig
    line: Line
    server: OpcUaServer
    client_cert: Path
    client_key: Path

    @property
    def endpoint(self) -> str:
        return self.cfg.opcua.endpoint


def make_keys(root: Path) -> tuple[Layout, Path, Path]:
    layout = Layout(root / "keys")
    make_opcua_certificate(layout.opcua_cert, layout.opcua_key, "urn:inspection-station:booth-t",
                           ["127.0.0.1", "localhost"], "booth-t")
    cert, key = layout.opcua_clients / "plc-cert.der", layout.opcua_clients / "plc-key.pem"
    make_opcua_certificate(cert, key, CLIENT_URI, ["localhost"], "plc", client=True)
    trust_certificate(cert, layout.opcua_trusted)
    set_user(layout.opcua_users, "plc", PASSWORD)
    return layout, cert, key


def booth_config(layout: Layout, *extra: str) -> StationConfig:
    port = free_port()
    return load_config("default", [
        "name=booth-t", "opcua.enabled=true",
        f"opcua.endpoint=opc.tcp://127.0.0.1:{port}/station",
        f"opcua.certificate={layout.opcua_cert}", f"opcua.private_key={layout.opcua_key}",
        f"opcua.trust_dir={layout.opcua_trusted}", f"opcua.users_file={layout.opcua_users}",
        *extra,
    ], env={})


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Layout, Path, Path]:
    return make_keys(tmp_path_factory.mktemp("opcua"))


@pytest.fixture(scope="module")
def running(keys: tuple[Layout, Path, Path]) -> Iterator[Booth]:
    layout, cert, key = keys
    cfg = booth_config(layout)
    line = Line()
    server = OpcUaServer(cfg, line.trigger, line.pending)
    server.start()
    yield Booth(layout, cfg, line, server, cert, key)
    server.stop()


@pytest.fixture
def booth(running: Booth) -> Booth:
    """The module's server, idle: no inspection pending, Busy false (a verdict clears it)."""
    line = running.line
    if line.busy or line.triggered:
        line.busy = False
        running.server.publish_verdict(header("INS-reset", "PASS"), {}, False)

        async def idle() -> None:
            async with await secure_client(running) as c:
                idx = await c.get_namespace_index(nodes.NAMESPACE_URI)
                for _ in range(200):
                    if not await c.get_node(ua.NodeId("Station.Busy", idx)).read_value():
                        return
                    await asyncio.sleep(0.02)

        run(idle())
    line.accepting = True
    line.triggered.clear()
    return running


async def secure_client(
    b: Booth, user: str | None = "plc", password: str | None = PASSWORD,
    cert: Path | None = None, key: Path | None = None, uri: str = CLIENT_URI,
) -> Client:
    c = Client(b.endpoint, timeout=10)
    c.application_uri = uri
    await c.set_security(SecurityPolicyBasic256Sha256, certificate=str(cert or b.client_cert),
                         private_key=str(key or b.client_key),
                         mode=ua.MessageSecurityMode.SignAndEncrypt)
    if user is not None:
        c.set_user(user)
    if password is not None:
        c.set_password(password)
    return c


def header(inspection_id: str, verdict: str = "FAIL", part_id: str = "A-1") -> dict[str, Any]:
    return {
        "schema": 1, "topic": "verdict", "station": "booth-t", "inspection_id": inspection_id,
        "part_id": part_id, "verdict": verdict, "reasons": ["crack 12 mm2 on cam0"],
        "started_at": "2026-11-30T10:00:00.000+00:00",
        "finished_at": "2026-11-30T10:00:01.250+00:00", "duration_ms": 1250.0,
        "timings_ms": {}, "model": {"model_id": "unet-1", "trained": True},
        "calibration_id": "cal-1",
        "cameras": [{"camera": "cam0", "defects": [{"class_name": "crack"}] * 2},
                    {"camera": "cam1", "defects": [{"class_name": "blowhole"}]}],
        "maps": [], "map_downscale": 8,
    }


def wait_for_condition(cond: Any, what: str, timeout_s: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def read(c: Client, idx: int, *ids: str) -> list[Any]:
    return [v for v in await c.read_values([c.get_node(ua.NodeId(i, idx)) for i in ids])]


def test_trigger_busy_verdict_sequence(booth: Booth) -> None:
    """Trigger returns an id and Busy turns true before it returns; a second Trigger gets
    BadInvalidState; the verdict is written whole (fields, counters, Busy false, Ready true,
    Sequence +1) with a data change on Sequence and a VerdictEventType event."""

    class Handler:
        def __init__(self) -> None:
            self.changes: list[Any] = []
            self.events: list[Any] = []

        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            self.changes.append(val)

        def event_notification(self, event: Any) -> None:
            self.events.append(event)

    async def main() -> None:
        c = await secure_client(booth)
        async with c:
            idx = await c.get_namespace_index(nodes.NAMESPACE_URI)
            station = c.get_node(ua.NodeId("Station", idx))
            handler = Handler()
            sub = await c.create_subscription(20, handler)
            await sub.subscribe_data_change(c.get_node(ua.NodeId("Station.LastVerdict.Sequence",
                                                                 idx)))
            etype = c.get_node(ua.NodeId("VerdictEventType", idx))
            await sub.subscribe_events(station, etype)
            assert await read(c, idx, "Station.Ready", "Station.Busy") == [True, False]
            (before,) = await read(c, idx, "Station.LastVerdict.Sequence")
            inspection_id = await station.call_method(ua.NodeId("Station.Trigger", idx), "A-1")
            assert inspection_id == "INS-1"
            assert await read(c, idx, "Station.Busy", "Station.Ready") == [True, False]
            with pytest.raises(ua.UaStatusCodeError) as err:
                await station.call_method(ua.NodeId("Station.Trigger", idx), "A-2")
            assert err.value.code == ua.StatusCodes.BadInvalidState
            booth.line.busy = False
            booth.server.publish_verdict(header(inspection_id), {"PASS": 3, "FAIL": 1}, False)
            for _ in range(200):
                if handler.events and handler.changes[-1:] == [before + 1]:
                    break
                await asyncio.sleep(0.02)
            values = await read(
                c, idx, "Station.LastVerdict.InspectionId", "Station.LastVerdict.Verdict",
                "Station.LastVerdict.VerdictCode", "Station.LastVerdict.PartId",
                "Station.LastVerdict.DefectClasses", "Station.LastVerdict.DefectCounts",
                "Station.LastVerdict.DefectTotal", "Station.LastVerdict.Sequence",
                "Station.Busy", "Station.Ready", "Station.Counters.Total",
                "Station.Counters.Yield", "Station.LastVerdict.DurationMs",
            )
            assert values == ["INS-1", "FAIL", 2, "A-1", ["blowhole", "crack"], [1, 2], 3,
                              before + 1, False, True, 4, 0.75, 1250.0]
            assert handler.changes[-1] == before + 1
            assert len(handler.events) == 1
            event = handler.events[0]
            assert (event.InspectionId, event.Verdict, event.VerdictCode) == ("INS-1", "FAIL", 2)
            assert event.Severity == nodes.VERDICT_SEVERITY["FAIL"]
            await sub.delete()

    run(main())
    assert booth.line.triggered == ["A-1"]


def test_trigger_refusals_name_their_status(booth: Booth) -> None:
    """A part id over 128 characters: BadInvalidArgument; a stopping station: BadShutdown."""

    async def main() -> None:
        async with await secure_client(booth) as c:
            idx = await c.get_namespace_index(nodes.NAMESPACE_URI)
            station = c.get_node(ua.NodeId("Station", idx))
            trigger = ua.NodeId("Station.Trigger", idx)
            with pytest.raises(ua.UaStatusCodeError) as err:
                await station.call_method(trigger, "x" * 129)
            assert err.value.code == ua.StatusCodes.BadInvalidArgument
            with pytest.raises(ua.UaStatusCodeError) as err:
                await station.call_method(trigger, ua.Variant(7, ua.VariantType.Int32))
            assert err.value.code == ua.StatusCodes.BadInvalidArgument
            booth.line.accepting = False
            with pytest.raises(ua.UaStatusCodeError) as err:
                await station.call_method(trigger, "A-3")
            assert err.value.code == ua.StatusCodes.BadShutdown

    run(main())
    assert booth.line.triggered == []


def test_endpoint_and_application_uri_exactly_as_configured(booth: Booth) -> None:
    """GetEndpoints advertises the configured URL to the letter (path included, whatever host
    the client used), one endpoint: Basic256Sha256 SignAndEncrypt with a user-name token and
    no anonymous one, and the application URI the certificate carries."""
    from station.keys import certificate_uri, read_certificate

    async def main() -> list[Any]:
        c = Client(booth.endpoint.replace("127.0.0.1", "localhost"))
        return list(await c.connect_and_get_server_endpoints())

    endpoints = run(main())
    assert [e.EndpointUrl for e in endpoints] == [booth.endpoint]
    (ep,) = endpoints
    assert ep.SecurityMode == ua.MessageSecurityMode.SignAndEncrypt
    assert ep.SecurityPolicyUri == SecurityPolicyBasic256Sha256.URI
    assert [t.TokenType for t in ep.UserIdentityTokens] == [ua.UserTokenType.UserName]
    assert ep.Server.ApplicationUri == "urn:inspection-station:booth-t"
    assert certificate_uri(read_certificate(booth.layout.opcua_cert)) == ep.Server.ApplicationUri


def test_every_published_node_exists_with_its_type(booth: Booth) -> None:
    """The node ids of docs/plc.md exist, with the documented type and value rank."""
    assert {v.node_id for v in nodes.VARIABLES} | {o[0] for o in nodes.OBJECTS} | {
        nodes.TRIGGER, nodes.VERDICT_EVENT_TYPE} == PUBLISHED_IDS

    async def main() -> None:
        async with await secure_client(booth) as c:
            idx = await c.get_namespace_index(nodes.NAMESPACE_URI)
            assert idx == 2
            for var in nodes.VARIABLES:
                node = c.get_node(ua.NodeId(var.node_id, idx))
                dtype = await node.read_data_type()
                assert dtype == ua.NodeId(getattr(ua.VariantType, var.type).value, 0), var
                assert await node.read_value_rank() == (1 if var.array else -1), var
                assert (await node.read_browse_name()).Name == var.name

    run(main())


@pytest.mark.parametrize(("user", "password"), [
    (None, None), ("plc", "wrong-password"), ("nobody", PASSWORD),
])
def test_anonymous_and_wrong_passwords_are_refused(
    booth: Booth, user: str | None, password: str | None
) -> None:
    """Anonymous (off by default), a wrong password and an unknown user get no session."""

    async def main() -> None:
        c = await secure_client(booth, user=user, password=password)
        with pytest.raises((ua.UaStatusCodeError, ua.UaError)):
            await c.connect()
        c.disconnect_socket()

    run(main())


def test_no_user_token_on_an_unencrypted_channel(booth: Booth) -> None:
    """A client on a SecurityMode None channel sending the right password is refused
    (asyncua asks the user manager there too), and so is an anonymous one."""

    async def main(user: str | None) -> None:
        c = Client(booth.endpoint, timeout=10)
        c.application_uri = CLIENT_URI
        if user:
            c.set_user(user)
            c.set_password(PASSWORD)
        with pytest.raises((ua.UaStatusCodeError, ua.UaError)):
            await c.connect()
        c.disconnect_socket()

    run(main("plc"))
    run(main(None))


def test_trust_folder_decides_and_is_read_at_each_session(
    booth: Booth, tmp_path: Path
) -> None:
    """An untrusted client certificate gets no session; trusted later through the folder (no
    restart), it does; an empty folder trusts no one."""
    cert, key = tmp_path / "other-cert.der", tmp_path / "other-key.pem"
    make_opcua_certificate(cert, key, "urn:test:other", ["localhost"], "other", client=True)

    async def connect() -> None:
        c = await secure_client(booth, cert=cert, key=key, uri="urn:test:other")
        try:
            await c.connect()
        finally:
            await c.disconnect()

    with pytest.raises((ua.UaStatusCodeError, ua.UaError)):
        run(connect())
    added = trust_certificate(cert, booth.layout.opcua_trusted)
    try:
        run(connect())
    finally:
        added.unlink()
    with pytest.raises((ua.UaStatusCodeError, ua.UaError)):
        run(connect())


def test_empty_trust_folder_starts_and_refuses(keys: tuple[Layout, Path, Path],
                                               tmp_path: Path) -> None:
    """A server whose trust folder is empty starts, and refuses every client."""
    layout, cert, key = keys
    empty = tmp_path / "trusted"
    empty.mkdir()
    cfg = booth_config(layout, f"opcua.trust_dir={empty}")
    line = Line()
    server = OpcUaServer(cfg, line.trigger, line.pending)
    server.start()
    try:
        b = Booth(layout, cfg, line, server, cert, key)

        async def main() -> None:
            c = await secure_client(b)
            with pytest.raises((ua.UaStatusCodeError, ua.UaError)):
                await c.connect()
            c.disconnect_socket()

        run(main())
    finally:
        server.stop()


def test_user_certificate_token(keys: tuple[Layout, Path, Path], tmp_path: Path) -> None:
    """A certificate in opcua.user_certs_dir logs in as an X.509 user token (asyncua's
    client signs the token with its application certificate, so that one is listed)."""
    layout, cert, key = keys
    users = tmp_path / "user-certs"
    trust_certificate(cert, users)
    cfg = booth_config(layout, f"opcua.user_certs_dir={users}", "opcua.users_file=null")
    line = Line()
    server = OpcUaServer(cfg, line.trigger, line.pending)
    server.start()
    try:
        b = Booth(layout, cfg, line, server, cert, key)

        async def main() -> str:
            c = await secure_client(b, user=None, password=None)
            await c.load_client_certificate(str(cert))  # the X.509 user token's certificate
            await c.load_private_key(str(key))
            async with c:
                idx = await c.get_namespace_index(nodes.NAMESPACE_URI)
                value: str = await c.get_node(ua.NodeId("Station.Name", idx)).read_value()
                return value

        assert run(main()) == "booth-t"
        (users / next(iter(p.name for p in users.iterdir()))).unlink()
        with pytest.raises((ua.UaStatusCodeError, ua.UaError)):
            run(main())
    finally:
        server.stop()


def test_server_survives_a_client_that_vanishes_mid_call(booth: Booth) -> None:
    """A client that drops its connection while its Trigger is being served leaves the server
    serving: the held call completes into the dead connection, and the next client's Trigger
    works."""
    booth.line.hold = True

    async def vanish() -> None:
        c = await secure_client(booth)
        await c.connect()
        idx = await c.get_namespace_index(nodes.NAMESPACE_URI)
        station = c.get_node(ua.NodeId("Station", idx))
        call = asyncio.ensure_future(station.call_method(ua.NodeId("Station.Trigger", idx), "V"))
        while not booth.line.entered.is_set():  # the server is inside the Trigger call
            await asyncio.sleep(0.01)
        c.uaclient.protocol.transport.abort()
        with pytest.raises(BaseException):  # noqa: B017  (whatever the dead socket raises)
            await asyncio.wait_for(call, 5)

    try:
        run(vanish())
    finally:
        booth.line.hold = False
        booth.line.release.set()
    wait_for_condition(lambda: booth.line.triggered == ["V"], "the held trigger to finish")
    booth.line.busy = False
    booth.server.publish_verdict(header("INS-1"), {}, False)

    async def next_client() -> str:
        async with await secure_client(booth) as c:
            idx = await c.get_namespace_index(nodes.NAMESPACE_URI)
            for _ in range(250):
                if not await c.get_node(ua.NodeId("Station.Busy", idx)).read_value():
                    break
                await asyncio.sleep(0.02)
            station = c.get_node(ua.NodeId("Station", idx))
            value: str = await station.call_method(ua.NodeId("Station.Trigger", idx), "N")
            return value

    assert run(next_client()) == "INS-2"
    assert booth.line.triggered == ["V", "N"]


def test_status_fills_status_and_health(booth: Booth) -> None:
    """A published status shows in Status, Health and Counters."""
    booth.server.publish_status({
        "state": "degraded", "problems": ["camera cam1 not connected: gone"],
        "cameras": [{"name": "cam0", "connected": True}, {"name": "cam1", "connected": False}],
        "lights": {"backend": "serial", "connected": True},
        "model": {"model_id": "unet-1", "trained": True},
        "calibration": {"calibration_id": None, "age_days": None},
        "counts": {"PASS": 1, "FAIL": 0, "ERROR": 1},
    })

    async def main() -> list[Any]:
        async with await secure_client(booth) as c:
            idx = await c.get_namespace_index(nodes.NAMESPACE_URI)
            for _ in range(100):
                if await c.get_node(ua.NodeId("Station.Status.State", idx)).read_value():
                    break
                await asyncio.sleep(0.02)
            return await read(c, idx, "Station.Status.State", "Station.Status.Problems",
                              "Station.Health.CamerasConnected", "Station.Health.Cameras",
                              "Station.Health.CalibrationAgeDays", "Station.Counters.Yield")

    assert run(main()) == ["degraded", ["camera cam1 not connected: gone"], False,
                           ["cam0: connected", "cam1: NOT CONNECTED"], -1.0, 0.5]


def test_start_refuses_a_certificate_of_another_application(
    keys: tuple[Layout, Path, Path]
) -> None:
    """The certificate's application URI must be the server's: a clear error names both."""
    layout, _, _ = keys
    cfg = booth_config(layout, "opcua.application_uri=urn:other")
    line = Line()
    with pytest.raises(ConfigError, match=r"urn:inspection-station:booth-t.*urn:other"):
        OpcUaServer(cfg, line.trigger, line.pending).start()


def test_start_refuses_a_taken_port(booth: Booth) -> None:
    """A second server on the same endpoint: StationError naming opcua.endpoint."""
    line = Line()
    with pytest.raises(StationError, match=r"opcua\.endpoint"):
        OpcUaServer(booth.cfg, line.trigger, line.pending).start()


def test_missing_trust_folder_is_a_clear_error(keys: tuple[Layout, Path, Path],
                                               tmp_path: Path) -> None:
    """A trust_dir that does not exist: ConfigError with the fix."""
    layout, _, _ = keys
    cfg = booth_config(layout, f"opcua.trust_dir={tmp_path / 'none'}")
    line = Line()
    with pytest.raises(ConfigError, match=r"opcua\.trust_dir"):
        OpcUaServer(cfg, line.trigger, line.pending).start()
    shutil.rmtree(tmp_path, ignore_errors=True)
