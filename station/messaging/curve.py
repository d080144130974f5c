"""CURVE on the station's sockets: key files, roles per key, and who may do what.

ZeroMQ's CURVE encrypts a connection and authenticates both ends by their public keys. The
station's two sockets are CURVE servers holding the station's secret key
(``messaging.curve.server_secret_key``); a client must hold a key pair whose public key lies
in a role folder (``plc_keys``, ``hmi_keys``, ``admin_keys``). The ZAP handler
(:class:`RoleAuthenticator`, pyzmq's ``ThreadAuthenticator`` with a key -> roles table)
decides at the handshake: an unknown key, a key whose roles may not use that socket, or a
client without CURVE gets no connection and so no answer at all. Each refused key is logged
once. Clients without CURVE (or with the wrong station key) fail the handshake before ZAP
and show no key: a socket monitor (:class:`HandshakeWatch`) logs the first such failure per
socket and then a count at most once a minute.

A key accepted on the command socket carries its roles as the ZAP user id (``"hmi,plc"``);
the daemon reads it from every request's ``User-Id`` message property and checks the command
against :data:`ROLE_COMMANDS` (:func:`refusal`).

Key files are pyzmq's ``zmq.auth`` certificates: ``NAME.key`` (public) and ``NAME.key_secret``
(both halves); ``station keys`` writes them.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import structlog
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from config import StationConfig
from config.errors import ConfigError
from config.messaging import ROLES, CurveConfig

log = structlog.get_logger(__name__)

#: What each role may ask on the command socket. ``ping`` is open to every role.
ROLE_COMMANDS: dict[str, frozenset[str]] = {
    "plc": frozenset({"inspect", "result", "status", "ping"}),
    "hmi": frozenset({"status", "history", "ping"}),
    "admin": frozenset({"inspect", "result", "status", "ping", "history", "reload"}),
}
#: The roles that may connect to the publish socket (subscribe).
SUBSCRIBE_ROLES = frozenset({"hmi", "admin"})
#: ZAP domains of the two sockets.
COMMAND_DOMAIN = "command"
PUBLISH_DOMAIN = "publish"
#: Distinct clients whose refusal is logged; beyond that, one line says the rest are not.
MAX_LOGGED_CLIENTS = 1024


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair, z85-encoded (40 characters each)."""

    public: bytes
    secret: bytes


@dataclass(frozen=True)
class ClientCurve:
    """What a client needs: its own key pair and the station's public key."""

    client: KeyPair
    server_public: bytes


def _check_key(key: bytes, path: Path, half: str) -> bytes:
    if len(key) != 40:
        raise ConfigError(
            f"{path}: the {half} key has {len(key)} characters; a CURVE key has 40 "
            "(make one with `station keys`)"
        )
    try:
        z85.decode(key)
    except (ValueError, KeyError, IndexError) as exc:
        raise ConfigError(f"{path}: the {half} key is not z85 text ({exc})") from exc
    return key


def load_key_pair(path: str | Path) -> KeyPair:
    """A secret key file (``*.key_secret``) as a key pair; ``ConfigError`` says what is wrong."""
    p = Path(path)
    try:
        public, secret = zmq.auth.load_certificate(p)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{p}: cannot read a CURVE secret key file ({exc}); make one with `station keys`"
        ) from exc
    if secret is None:
        raise ConfigError(
            f"{p} holds only a public key; give the secret key file (NAME.key_secret) that "
            "`station keys` wrote beside it"
        )
    return KeyPair(_check_key(public, p, "public"), _check_key(secret, p, "secret"))


def load_public_key(path: str | Path) -> bytes:
    """The public key of a ``*.key`` (or ``*.key_secret``) file."""
    p = Path(path)
    try:
        public, _ = zmq.auth.load_certificate(p)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: cannot read a CURVE public key file ({exc})") from exc
    return _check_key(public, p, "public")


def public_file_of(secret_path: str | Path) -> Path:
    """``server.key_secret`` -> ``server.key`` (the public half ``station keys`` writes beside)."""
    p = Path(secret_path)
    return p.with_name(p.name.removesuffix("_secret"))


def load_role_keys(folders: Mapping[str, Path]) -> dict[bytes, frozenset[str]]:
    """Public key (z85) -> its roles, from every ``*.key`` file of every role folder.

    A key in two folders has both roles. A missing folder or an unreadable file is a
    ``ConfigError`` naming it.
    """
    roles: dict[bytes, set[str]] = {}
    for role, folder in folders.items():
        if role not in ROLES:
            raise ConfigError(f"role {role!r} is not known; roles: {', '.join(ROLES)}")
        if not folder.is_dir():
            raise ConfigError(
                f"messaging.curve.{role}_keys = {str(folder)!r}: no such folder; create it "
                f"(`station keys --client NAME --role {role}` does) or unset the key"
            )
        for file in sorted(folder.glob("*.key")):
            roles.setdefault(load_public_key(file), set()).add(role)
    return {k: frozenset(v) for k, v in roles.items()}


def role_folders(cfg: CurveConfig, resolve: Any) -> dict[str, Path]:
    """The configured role folders, resolved against the config file's folder."""
    out = {}
    for role in ROLES:
        value = getattr(cfg, f"{role}_keys")
        if value:
            out[role] = Path(resolve(value))
    return out


def user_id_of(roles: frozenset[str]) -> str:
    """The ZAP user id carrying a key's roles: sorted, comma-separated."""
    return ",".join(sorted(roles))


def roles_of(user_id: str | None) -> frozenset[str]:
    """The roles in a ZAP user id (empty for none)."""
    if not user_id:
        return frozenset()
    return frozenset(r for r in user_id.split(",") if r in ROLES)


def refusal(command: str, user_id: str | None) -> str | None:
    """Why a client with this user id may not send ``command``; ``None`` when it may."""
    roles = roles_of(user_id)
    if any(command in ROLE_COMMANDS[r] for r in roles):
        return None
    may = [r for r in ROLES if command in ROLE_COMMANDS[r]]  # least privileged first
    held = ", ".join(sorted(roles)) or "none"
    return (
        f"command {command!r} needs the role {' or '.join(may)}; this client's key has the "
        f"role(s) {held}; put its public key in messaging.curve.{may[0]}_keys"
    )


class RoleAuthenticator(ThreadAuthenticator):
    """ZAP handler: accepts a CURVE client when its key's roles may use the socket's domain.

    The table of keys can be swapped while running (:meth:`set_keys`). Refusals are logged
    once per client key.
    """

    def __init__(self, context: zmq.Context[Any], keys: Mapping[bytes, frozenset[str]]) -> None:
        super().__init__(context)
        self._keys: dict[bytes, frozenset[str]] = dict(keys)
        self._logged: set[tuple[bytes, str]] = set()
        self._lock = threading.Lock()
        self._address = ""
        #: refusals since start, per reason (read by status)
        self.refused = 0

    def set_keys(self, keys: Mapping[bytes, frozenset[str]]) -> None:
        """Replace the key table (new handshakes use it; open connections keep theirs)."""
        with self._lock:
            self._keys = dict(keys)

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        """Remember the peer address for the log line, then decide as pyzmq does."""
        self._address = msg[3].decode(errors="replace") if len(msg) > 3 else ""
        await super().handle_zap_message(msg)

    async def _authenticate_curve(self, domain: str, client_key: bytes) -> tuple[bool, bytes]:
        key = z85.encode(client_key)
        with self._lock:
            roles = self._keys.get(key)
        if roles is None:
            self._refuse(key, domain, "unknown key: its public key is in no role folder")
            return False, b"Unknown key"
        if domain == PUBLISH_DOMAIN and not roles & SUBSCRIBE_ROLES:
            self._refuse(key, domain, f"role(s) {user_id_of(roles)} may not subscribe "
                         f"(needs {' or '.join(sorted(SUBSCRIBE_ROLES))})")
            return False, b"Role may not subscribe"
        return True, b"OK"

    def curve_user_id(self, client_public_key: bytes) -> str:
        """The user id requests carry: the key's roles."""
        with self._lock:
            roles = self._keys.get(z85.encode(client_public_key), frozenset())
        return user_id_of(roles)

    def _refuse(self, key: bytes, domain: str, why: str) -> None:
        self.refused += 1
        mark = (key, domain)
        if mark in self._logged:
            return
        if len(self._logged) >= MAX_LOGGED_CLIENTS:
            if len(self._logged) == MAX_LOGGED_CLIENTS:
                self._logged.add((b"", "limit"))
                log.warning("CURVE refusals of further clients are not logged",
                            limit=MAX_LOGGED_CLIENTS)
            return
        self._logged.add(mark)
        log.warning("CURVE client refused (logged once per client)", socket=domain,
                    client_key=key.decode(), address=self._address, reason=why)


def make_server(sock: zmq.Socket[Any], keys: KeyPair, domain: str) -> None:
    """Make ``sock`` (before bind) a CURVE server in the ZAP ``domain``."""
    sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)


def make_client(sock: zmq.Socket[Any], curve: ClientCurve) -> None:
    """Make ``sock`` (before connect) a CURVE client of the station."""
    sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server_public)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.client.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, curve.client.secret)


class HandshakeWatch:
    """Logs handshakes that fail before ZAP (no CURVE, wrong station key), from monitors."""

    EVENTS = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    SUMMARY_S = 60.0

    def __init__(self) -> None:
        self._monitors: list[tuple[zmq.Socket[Any], str]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: failed handshakes since start, per socket
        self.failures: dict[str, int] = {}

    def watch(self, sock: zmq.Socket[Any], domain: str) -> None:
        """Monitor ``sock`` (call from the thread that owns it, before :meth:`start`)."""
        self._monitors.append((sock.get_monitor_socket(self.EVENTS), domain))

    def start(self) -> None:
        """Read the monitors on a thread of their own."""
        self._thread = threading.Thread(target=self._run, name="curve-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import time

        from zmq.utils.monitor import recv_monitor_message

        poller = zmq.Poller()
        for mon, _ in self._monitors:
            poller.register(mon, zmq.POLLIN)
        logged: dict[str, float] = {}
        counted: dict[str, int] = {}
        while not self._stop.is_set():
            for mon, domain in self._monitors:
                if not mon.poll(0):
                    continue
                try:
                    recv_monitor_message(mon)
                except zmq.ZMQError:
                    continue
                self.failures[domain] = self.failures.get(domain, 0) + 1
                now = time.monotonic()
                if domain not in logged:
                    logged[domain] = now
                    counted[domain] = self.failures[domain]
                    log.warning("CURVE handshake failed: a client without CURVE or with the "
                                "wrong station key was refused (first of its kind; a count "
                                "follows at most once a minute)", socket=domain)
                elif now - logged[domain] >= self.SUMMARY_S:
                    log.warning("CURVE handshakes failed", socket=domain,
                                since_last=self.failures[domain] - counted[domain])
                    logged[domain], counted[domain] = now, self.failures[domain]
            poller.poll(200)
        for mon, _ in self._monitors:
            mon.close(0)

    def stop(self) -> None:
        """Stop the thread (it closes the monitor sockets)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


@dataclass
class ServerCurve:
    """What the daemon holds while CURVE is on: its key pair and the running ZAP handler."""

    keys: KeyPair
    authenticator: RoleAuthenticator
    folders: dict[str, Path]
    handshakes: HandshakeWatch = field(default_factory=HandshakeWatch)

    def reload_keys(self) -> int:
        """Read the role folders again; returns the number of keys. Raises ``ConfigError``."""
        table = load_role_keys(self.folders)
        self.authenticator.set_keys(table)
        return len(table)

    def stop(self) -> None:
        """Stop the ZAP and monitor threads."""
        self.handshakes.stop()
        self.authenticator.stop()


def start_server_curve(cfg: StationConfig, context: zmq.Context[Any]) -> ServerCurve | None:
    """Load the keys and start the ZAP handler when ``messaging.curve.enabled``; else ``None``."""
    c = cfg.messaging.curve
    if not c.enabled:
        return None
    assert c.server_secret_key is not None  # the schema requires it when enabled
    keys = load_key_pair(cfg.resolve(c.server_secret_key))
    folders = role_folders(c, cfg.resolve)
    table = load_role_keys(folders)
    auth = RoleAuthenticator(context, table)
    auth.start()
    log.info("CURVE on", keys=len(table), roles=sorted(folders))
    if not table:
        log.warning("CURVE is on but the role folders hold no key: no client can connect",
                    folders={r: str(f) for r, f in folders.items()})
    return ServerCurve(keys=keys, authenticator=auth, folders=folders)


def client_curve(cfg: StationConfig) -> ClientCurve | None:
    """The command line's CURVE settings for a station with CURVE on; ``None`` when off."""
    c = cfg.messaging.curve
    if not c.enabled:
        return None
    if not c.client_secret_key:
        raise ConfigError(
            "this station has messaging.curve.enabled: true, so the command line needs a key: "
            "make one with `station keys --client NAME --role admin` and set "
            "messaging.curve.client_secret_key to its .key_secret file"
        )
    assert c.server_secret_key is not None
    client = load_key_pair(cfg.resolve(c.client_secret_key))
    server_public = load_public_key(public_file_of(cfg.resolve(c.server_secret_key)))
    return ClientCurve(client=client, server_public=server_public)


def is_loopback(endpoint: str) -> bool:
    """True for ``ipc://``/``inproc://`` and for TCP endpoints bound to a loopback address."""
    url = urlparse(endpoint)
    if url.scheme in ("ipc", "inproc"):
        return True
    host = (url.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name, a host name or '*': beyond loopback


def exposure_warnings(cfg: StationConfig) -> list[str]:
    """One line per socket listening beyond loopback without CURVE (status shows them)."""
    if cfg.messaging.curve.enabled:
        return []
    out = []
    for key in ("command", "publish"):
        endpoint = getattr(cfg.messaging, key)
        if not is_loopback(endpoint):
            out.append(
                f"messaging.{key} = {endpoint} listens beyond loopback without CURVE: anyone "
                "who reaches the port can "
                + ("trigger inspections" if key == "command" else "read every verdict")
                + "; turn on messaging.curve (docs/plc.md)"
            )
    return out
