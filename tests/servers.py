"""Real servers for the plant's side, started and stopped by the tests: Debian's Mosquitto and a
throw-away PostgreSQL cluster (``initdb``), on free ports of 127.0.0.1.

Without the programs (``apt-get install mosquitto postgresql``) or the Python extras (paho-mqtt,
psycopg) the tests that need them skip, unless ``STATION_REQUIRE_FLEET=1`` (set by ``.ci/run``,
which installs them), where they fail.

As root (CI containers), PostgreSQL runs as the ``postgres`` user (it refuses root) and
Mosquitto stays root (``user root``), each on files of its own under a fresh temporary folder.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_ENV = "STATION_REQUIRE_FLEET"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need(what: str, available: bool) -> None:
    """Skip (or, with $STATION_REQUIRE_FLEET=1, fail) when ``what`` is not available."""
    if available:
        return
    message = (f"{what} is not installed (apt-get install mosquitto postgresql; "
               "pip install -e '.[mqtt,collect]')")
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(message + f"; ${REQUIRE_ENV}=1 requires it")
    pytest.skip(message)


def skip_without(module: str) -> None:
    """At a test module's top: skip the module when ``module`` cannot be imported, unless
    $STATION_REQUIRE_FLEET=1 (then the import error fails the run)."""
    if os.environ.get(REQUIRE_ENV) != "1":
        pytest.importorskip(module)


def wait_port(port: int, timeout_s: float, what: str, log: Path | None = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                text = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
                raise AssertionError(
                    f"{what} not listening on {port} in {timeout_s} s\n{text}") from None
            time.sleep(0.05)


def wait_for(cond: object, timeout_s: float, what: str, every_s: float = 0.05) -> None:
    """Poll ``cond()`` until true; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


# --- TLS -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(folder: Path, client_cn: str = "station") -> Certificates:
    """Make a CA and the two certificates it signs, with Debian's ``openssl``."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.crt", "-days", "3", "-subj", "/CN=station test CA")
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, cn, ext in (("server", "127.0.0.1", ["-extfile", "server.ext"]),
                          ("client", client_cn, [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", f"/CN={cn}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "3", *ext)
    for p in folder.iterdir():
        p.chmod(0o644)
    return Certificates(folder / "ca.crt", folder / "server.crt", folder / "server.key",
                        folder / "client.crt", folder / "client.key")


# --- Mosquitto ------------------------------------------------------------------------------


def mosquitto_bin() -> str | None:
    """The broker program: on PATH, else Debian's /usr/sbin/mosquitto (not on a user's PATH)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    return found


class Mosquitto:
    """A Mosquitto broker of our own: a password-protected plain listener (``port``), and with
    ``certs`` a TLS-only listener (``tls_port``, passwords) and a TLS listener that requires a
    client certificate, its CN the user name (``cert_port``). Persistence on, so that queued
    messages survive a restart; ``acl`` (mosquitto acl_file text) when given."""

    def __init__(self, folder: Path, users: dict[str, str], certs: Certificates | None = None,
                 acl: str | None = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.users = users
        self.certs = certs
        self.port = free_port()
        self.tls_port = free_port() if certs else None
        self.cert_port = free_port() if certs else None
        self.log_path = folder / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        pw = folder / "passwords"
        pw.write_text("")
        for user, password in users.items():
            subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True,
                           capture_output=True)
        self.acl_path = folder / "acl"
        lines = [
            "per_listener_settings true",
            f"persistence true\npersistence_location {folder}/",
            "max_queued_messages 100000",
            f"log_dest file {self.log_path}",
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        auth = [f"allow_anonymous false\npassword_file {pw}"]
        if acl is not None:
            self.acl_path.write_text(acl)
            auth.append(f"acl_file {self.acl_path}")
        lines += [f"listener {self.port} 127.0.0.1", *auth]
        if certs:
            tls = [f"cafile {certs.ca}", f"certfile {certs.server_cert}",
                   f"keyfile {certs.server_key}"]
            lines += [f"listener {self.tls_port} 127.0.0.1", *tls, *auth]
            lines += [f"listener {self.cert_port} 127.0.0.1", *tls,
                      "require_certificate true\nuse_identity_as_username true",
                      "allow_anonymous false"]
            if acl is not None:
                lines.append(f"acl_file {self.acl_path}")
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Start it and wait until every listener accepts connections."""
        assert self.proc is None or self.proc.poll() is not None
        with (self.folder / "stdout.log").open("ab") as out:
            self.proc = subprocess.Popen([mosquitto_bin() or "mosquitto", "-c", str(self.conf)],
                                         stdout=out,
                                         stderr=subprocess.STDOUT)
        for port in (self.port, self.tls_port, self.cert_port):
            if port is not None:
                wait_port(port, 10, "mosquitto", self.log_path)

    def stop(self) -> None:
        """SIGTERM (it saves its persistence file) and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)

    def reload(self) -> None:
        """SIGHUP: re-read the password and ACL files."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# --- PostgreSQL -----------------------------------------------------------------------------


def pg_bin(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                      key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return versions[-1] if versions else None


class Postgres:
    """A throw-away cluster: ``initdb`` into a temporary folder, ``pg_ctl start`` on a free
    port (TCP on 127.0.0.1 only, trust authentication, no Unix socket)."""

    def __init__(self, fsync: bool = False) -> None:
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        assert initdb and pg_ctl
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.user = "postgres" if os.geteuid() == 0 else None
        self.folder = Path(tempfile.mkdtemp(prefix="station-pg-"))
        if self.user:
            shutil.chown(self.folder, self.user, self.user)
        self.data = self.folder / "data"
        self.log_path = self.folder / "server.log"
        self.port = free_port()
        self.fsync = fsync
        self._run([self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust",
                   "-E", "UTF8", "--locale=C", "--no-sync"])

    @property
    def dsn(self) -> str:
        """The connection string of the ``postgres`` database as its superuser."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, args: list[str]) -> None:
        done = subprocess.run(args, capture_output=True, user=self.user, cwd=self.folder,
                              check=False)
        if done.returncode:
            raise AssertionError(f"{' '.join(args)} failed:\n{done.stdout.decode()}"
                                 f"{done.stderr.decode()}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   "-c unix_socket_directories='' -c max_connections=40 "
                   f"-c fsync={'on' if self.fsync else 'off'} "
                   "-c track_io_timing=on -c track_wal_io_timing=on")
        self._run([self.pg_ctl, "-D", str(self.data), "-l", str(self.log_path), "-o", options,
                   "-w", "-t", "30", "start"])

    def stop(self) -> None:
        """Stop fast (connections are cut) and wait."""
        self._run([self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def remove(self) -> None:
        """Stop when running and delete the cluster."""
        subprocess.run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, user=self.user, check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


# --- a subscriber for the tests -------------------------------------------------------------


class Listener:
    """A paho subscriber (its own network thread): every message on ``filters`` in arrival
    order, as (topic, payload, retained). With ``session_expiry_s`` > 0 and a fixed
    ``client_id`` it keeps a persistent session (clean start off), so it misses nothing while it
    or the broker is away."""

    def __init__(self, port: int, user: str, password: str, filters: list[str],
                 client_id: str = "", session_expiry_s: int = 0) -> None:
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.messages: list[tuple[str, bytes, bool]] = []
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, password)

        def on_connect(client: mqtt.Client, userdata: object, flags: object, reason: object,
                       props: object) -> None:
            client.subscribe([(f, 1) for f in filters])

        def on_subscribe(*args: object) -> None:
            self.connected.set()

        def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
            with self._lock:
                self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = session_expiry_s
        self.client.connect("127.0.0.1", port, 30, clean_start=session_expiry_s == 0,
                            properties=props)
        self.client.loop_start()
        wait_for(self.connected.is_set, 10, "the test subscriber to subscribe")

    def payloads(self, suffix: str) -> list[dict[str, object]]:
        """The JSON payloads of topics ending in ``suffix``, in arrival order."""
        import json

        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
