"""CURVE on real ZeroMQ sockets (127.0.0.1, random ports, linger 0): the role authenticator
lets the right keys in, refuses unknown keys, wrong roles and plain-text clients with nothing,
and logs each refused client once; the role table; the loopback warnings."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import zmq
from zmq.utils.monitor import recv_monitor_message

from config import load_config
from config.errors import ConfigError
from station.keys import Layout, client_pair, server_pair
from station.messaging.curve import (
    COMMAND_DOMAIN,
    PUBLISH_DOMAIN,
    ClientCurve,
    RoleAuthenticator,
    client_curve,
    exposure_warnings,
    load_key_pair,
    load_public_key,
    load_role_keys,
    make_client,
    make_server,
    refusal,
    roles_of,
)


def try_send(sock: zmq.Socket[bytes], body: bytes) -> None:
    """Send without blocking: a REQ socket whose handshake was refused has no peer, and a
    blocking send would wait for one forever."""
    with contextlib.suppress(zmq.Again):
        sock.send(body, zmq.NOBLOCK)


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Booth:
    """A ROUTER and a PUB with CURVE, the role authenticator, and client keys per role."""

    def __init__(self, root: Path) -> None:
        self.layout = Layout(root)
        server_pair(self.layout)
        self.clients = {}
        for name, role in (("plc1", "plc"), ("hmi1", "hmi"), ("ops", "admin")):
            secret, _ = client_pair(self.layout, name, role)
            self.clients[name] = load_key_pair(secret)
        self.server = load_key_pair(self.layout.server_secret)
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        folders = {r: self.layout.role_dir(r) for r in ("plc", "hmi", "admin")}
        self.auth = RoleAuthenticator(self.ctx, load_role_keys(folders))
        self.auth.start()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        make_server(self.router, self.server, COMMAND_DOMAIN)
        self.router_monitor = self.router.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        self.command = f"tcp://127.0.0.1:{self.router.bind_to_random_port('tcp://127.0.0.1')}"
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        make_server(self.pub, self.server, PUBLISH_DOMAIN)
        self.publish = f"tcp://127.0.0.1:{self.pub.bind_to_random_port('tcp://127.0.0.1')}"
        self.sockets: list[zmq.Socket[bytes]] = []

    def client(self, kind: int, name: str | None, endpoint: str) -> zmq.Socket[bytes]:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if name is not None:
            keys = self.clients[name] if name in self.clients else load_key_pair(
                self.layout.clients / f"{name}.key_secret")
            make_client(sock, ClientCurve(keys, self.server.public))
        sock.connect(endpoint)
        self.sockets.append(sock)
        return sock

    def serve_one(self, timeout_ms: int = 10_000) -> tuple[bytes, str | None]:
        """Receive one request on the ROUTER, echo it; returns (body, User-Id)."""
        assert self.router.poll(timeout_ms), "no request reached the ROUTER"
        frames = self.router.recv_multipart(copy=False)
        user = frames[-1].get("User-Id")
        self.router.send_multipart([frames[0].bytes, b"", frames[-1].bytes])
        return frames[-1].bytes, user

    def close(self) -> None:
        for s in self.sockets:
            s.close(0)
        self.router.disable_monitor()
        self.router_monitor.close(0)
        self.router.close(0)
        self.pub.close(0)
        self.auth.stop()
        self.ctx.term()


@pytest.fixture
def booth(tmp_path: Path) -> Iterator[Booth]:
    b = Booth(tmp_path / "keys")
    yield b
    b.close()


def test_right_key_is_served_and_carries_its_roles(booth: Booth) -> None:
    """A PLC key connects, its request arrives with User-Id 'plc', the reply comes back."""
    req = booth.client(zmq.REQ, "plc1", booth.command)
    req.send(b'{"command": "ping"}')
    body, user = booth.serve_one()
    assert (body, user) == (b'{"command": "ping"}', "plc")
    assert req.poll(10_000)
    assert req.recv() == body
    assert refusal("ping", user) is None
    assert refusal("inspect", user) is None


def test_unknown_key_gets_nothing_and_is_logged_once(booth: Booth, tmp_path: Path) -> None:
    """A key in no role folder: the handshake is refused (nothing reaches the ROUTER, no
    reply), three attempts give one log line."""
    from station.keys import make_curve_pair

    make_curve_pair(booth.layout.clients, "stranger")
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            req = booth.client(zmq.REQ, "stranger", booth.command)
            try_send(req, b'{"command": "ping"}')
        wait_for(lambda: booth.auth.refused >= 3, 10, "three ZAP refusals")
    assert not booth.router.poll(0)
    refused = [e for e in logs if e["event"].startswith("CURVE client refused")]
    assert len(refused) == 1, logs
    assert refused[0]["socket"] == COMMAND_DOMAIN
    assert refused[0]["client_key"] == load_public_key(
        booth.layout.clients / "stranger.key").decode()


def test_plain_text_client_gets_nothing(booth: Booth) -> None:
    """A client without CURVE fails the handshake: the ROUTER never sees its request."""
    req = booth.client(zmq.REQ, None, booth.command)
    try_send(req, b'{"command": "ping"}')
    assert booth.router_monitor.poll(10_000), "no handshake failure reported"
    event: dict[str, Any] = recv_monitor_message(booth.router_monitor)
    assert event["event"] in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                              zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    assert not booth.router.poll(0)
    assert not req.poll(0)


def test_subscribe_needs_the_hmi_or_admin_role(booth: Booth) -> None:
    """On the publish socket an HMI key receives; a PLC key (no subscribe role) is refused."""
    hmi = booth.client(zmq.SUB, "hmi1", booth.publish)
    hmi.setsockopt(zmq.SUBSCRIBE, b"")
    plc = booth.client(zmq.SUB, "plc1", booth.publish)
    plc.setsockopt(zmq.SUBSCRIBE, b"")
    wait_for(lambda: booth.auth.refused >= 1, 10, "the PLC key's refusal")
    deadline = time.monotonic() + 10
    while not hmi.poll(20):  # the slow joiner: publish until the subscriber has joined
        booth.pub.send_multipart([b"status", b"{}"])
        assert time.monotonic() < deadline, "the HMI subscriber never received"
    assert hmi.recv_multipart()[0] == b"status"
    assert not plc.poll(0)


def test_role_table() -> None:
    """What each role may ask; a key in two folders has both roles; refusals say the fix."""
    assert refusal("reload", "admin") is None
    assert refusal("history", "hmi") is None
    assert refusal("history", "hmi,plc") is None
    assert refusal("inspect", "hmi,plc") is None
    message = refusal("reload", "plc")
    assert message is not None and "admin" in message and "admin_keys" in message
    message = refusal("inspect", "hmi")
    assert message is not None and "plc or admin" in message
    assert refusal("ping", None) is not None
    assert roles_of("admin,bogus") == frozenset({"admin"})


def test_key_in_two_folders_has_both_roles(booth: Booth) -> None:
    """A public key copied into plc/ and hmi/ connects with User-Id 'hmi,plc'."""
    public = booth.layout.clients / "plc1.key"
    (booth.layout.role_dir("hmi") / "plc1.key").write_bytes(public.read_bytes())
    folders = {r: booth.layout.role_dir(r) for r in ("plc", "hmi", "admin")}
    booth.auth.set_keys(load_role_keys(folders))
    req = booth.client(zmq.REQ, "plc1", booth.command)
    req.send(b"x")
    assert booth.serve_one()[1] == "hmi,plc"


def test_key_files_refuse_garbage(tmp_path: Path) -> None:
    """A public-only file as a secret key, a garbage file, a missing role folder: ConfigError
    naming the file and the fix."""
    layout = Layout(tmp_path)
    server_pair(layout)
    with pytest.raises(ConfigError, match="only a public key"):
        load_key_pair(layout.server_public)
    bad = tmp_path / "plc" / "bad.key"
    bad.write_text("nothing here\n")
    with pytest.raises(ConfigError, match=r"bad\.key"):
        load_role_keys({"plc": tmp_path / "plc"})
    short = tmp_path / "short.key"
    short.write_text('curve\n    public-key = "abc"\n')
    with pytest.raises(ConfigError, match="40"):
        load_public_key(short)
    with pytest.raises(ConfigError, match="plc_keys"):
        load_role_keys({"plc": tmp_path / "missing"})


def test_exposure_warnings() -> None:
    """Beyond loopback without CURVE: one warning per socket; loopback or CURVE: none."""
    assert exposure_warnings(load_config("default", [], env={})) == []
    wide = load_config("default", ["messaging.command=tcp://0.0.0.0:5561",
                                   "messaging.publish=tcp://eth0:5560"], env={})
    warnings = exposure_warnings(wide)
    assert len(warnings) == 2
    assert "trigger inspections" in warnings[0] and "messaging.curve" in warnings[0]
    assert exposure_warnings(load_config("default", [
        "messaging.command=tcp://[::1]:5561", "messaging.publish=ipc:///tmp/x"], env={})) == []


def test_config_needs_keys_when_curve_is_on(tmp_path: Path) -> None:
    """curve.enabled without a server key or role folders is refused at load; the command
    line without a client key gets a ConfigError with the fix."""
    with pytest.raises(ConfigError, match="server_secret_key"):
        load_config("default", ["messaging.curve.enabled=true"], env={})
    with pytest.raises(ConfigError, match="role folder"):
        load_config("default", ["messaging.curve.enabled=true",
                                f"messaging.curve.server_secret_key={tmp_path}/s"], env={})
    layout = Layout(tmp_path)
    server_pair(layout)
    cfg = load_config("default", [
        "messaging.curve.enabled=true",
        f"messaging.curve.server_secret_key={layout.server_secret}",
        f"messaging.curve.admin_keys={layout.role_dir('admin')}"], env={})
    with pytest.raises(ConfigError, match="client_secret_key"):
        client_curve(cfg)
    secret, _ = client_pair(layout, "ops", "admin")
    cfg = load_config("default", [
        "messaging.curve.enabled=true",
        f"messaging.curve.server_secret_key={layout.server_secret}",
        f"messaging.curve.admin_keys={layout.role_dir('admin')}",
        f"messaging.curve.client_secret_key={secret}"], env={})
    curve = client_curve(cfg)
    assert curve is not None
    assert curve.server_public == load_public_key(layout.server_public)


def test_handshake_failures_before_zap_are_logged_once(booth: Booth) -> None:
    """Clients without CURVE never reach ZAP: the monitor counts them and logs the first."""
    from station.messaging.curve import HandshakeWatch

    router = booth.ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    make_server(router, booth.server, COMMAND_DOMAIN)
    endpoint = f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}"
    watch = HandshakeWatch()
    watch.watch(router, COMMAND_DOMAIN)
    with structlog.testing.capture_logs() as logs:
        watch.start()
        for _ in range(3):
            req = booth.client(zmq.REQ, None, endpoint)
            try_send(req, b"x")
        wait_for(lambda: watch.failures.get(COMMAND_DOMAIN, 0) >= 3, 10, "three failures")
        watch.stop()
    router.close(0)
    failed = [e for e in logs if e["event"].startswith("CURVE handshake failed")]
    assert len(failed) == 1 and failed[0]["socket"] == COMMAND_DOMAIN
