"""One connection to the plant's MQTT broker, driven by its owner's thread.

:class:`Link` makes a *fresh* paho client for every connection attempt (MQTT 5, the fixed
client id, TLS and credentials from the ``mqtt`` section), so nothing paho keeps in memory
(its queue of unacknowledged messages) outlives a connection: what was not acknowledged is
resent by the owner (the station from its outbox on disk; the collector gets it again from
the broker's session). The owner calls :meth:`Link.step` in a loop; there is no paho thread.

Every way a connection fails becomes one sentence naming the key to change
(:func:`refusal_words`, :func:`exception_words`): connection refused, TLS handshakes, a
CONNACK refusal (wrong password: 0x86 or 0x87), a plain-text client on a TLS-only listener
(the broker closes without a CONNACK), a session taken over by another client of the same id.

paho calls callbacks inside ``loop()``; an exception there would end a paho network thread in
silence, and here it would leave this link half-open, so every callback is wrapped: an
exception is logged and the connection dropped and retried like any other failure.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from config import StationConfig
from config.errors import ConfigError
from drivers.backoff import Backoff

log = structlog.get_logger(__name__)

#: The environment variable that overrides ``mqtt.password_file``.
PASSWORD_ENV = "STATION_MQTT_PASSWORD"

OnConnected = Callable[[mqtt.Client, bool, Properties | None], None]


def broker_url(cfg: StationConfig) -> str:
    """``mqtt://host:port`` or ``mqtts://host:port`` (for messages and status)."""
    m = cfg.mqtt
    return f"{'mqtts' if m.tls.enabled else 'mqtt'}://{m.host}:{m.port}"


def read_password(cfg: StationConfig, env: Mapping[str, str] | None = None) -> str | None:
    """$STATION_MQTT_PASSWORD, else the first line of ``mqtt.password_file``, else None."""
    env = os.environ if env is None else env
    if env.get(PASSWORD_ENV) is not None:
        return env[PASSWORD_ENV]
    if cfg.mqtt.password_file is None:
        return None
    path = cfg.resolve(cfg.mqtt.password_file)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            f"mqtt.password_file {str(path)!r}: cannot read it ({exc.strerror}); write the "
            f"password into it (chmod 600) or set ${PASSWORD_ENV}"
        ) from exc
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise ConfigError(f"mqtt.password_file {str(path)!r} is empty; write the password "
                          "on its first line")
    return lines[0]


def tls_context(cfg: StationConfig) -> ssl.SSLContext | None:
    """The TLS context of ``mqtt.tls`` (server certificate and host name checked), or None."""
    t = cfg.mqtt.tls
    if not t.enabled:
        return None
    ca = None if t.ca_file is None else str(cfg.resolve(t.ca_file))
    try:
        ctx = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"mqtt.tls.ca_file {ca!r}: not a readable PEM file of CA certificates ({exc}); give "
            "the CA that signed the broker's certificate"
        ) from exc
    if t.cert_file is not None and t.key_file is not None:
        cert, key = str(cfg.resolve(t.cert_file)), str(cfg.resolve(t.key_file))
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"mqtt.tls.cert_file {cert!r} / key_file {key!r}: cannot load the client "
                f"certificate and its key ({exc}); give PEM files, the key unencrypted"
            ) from exc
    return ctx


def check_settings(cfg: StationConfig) -> None:
    """Refuse, before anything slow starts, what cannot work: paho missing, the password file
    or certificate files unreadable. Raises ``ConfigError``."""
    read_password(cfg)
    tls_context(cfg)
    for key in ("ca_file", "cert_file", "key_file"):
        value = getattr(cfg.mqtt.tls, key)
        if value is not None and not Path(cfg.resolve(value)).is_file():
            raise ConfigError(f"mqtt.tls.{key} = {value!r}: {cfg.resolve(value)} is not a file")


def refusal_words(cfg: StationConfig, reason: ReasonCode, client_id: str) -> str:
    """A CONNACK refusal in words, with the keys to check."""
    url = broker_url(cfg)
    code = f"{reason} (0x{reason.value:02X})"
    if reason.value in (0x86, 0x87, 0x8C):
        who = f"user {cfg.mqtt.username!r}" if cfg.mqtt.username else "anonymous clients"
        return (f"{url} refused the connection: {code}; check mqtt.username and the password "
                f"(${PASSWORD_ENV} or mqtt.password_file), or client certificate, and that the "
                f"broker lets {who} connect")
    if reason.value == 0x85:
        return (f"{url} refused the client id {client_id!r}: {code}; set another with "
                "mqtt.client_id / collect.client_id")
    if reason.value == 0x8A:
        return f"{url} refused the connection: {code}; the broker has banned this client"
    return f"{url} refused the connection: {code}"


def exception_words(cfg: StationConfig, exc: BaseException) -> str:
    """A failed TCP or TLS connection in words, with the keys to check."""
    m, url = cfg.mqtt, broker_url(cfg)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"{url}: the broker's TLS certificate was not accepted ({exc.verify_message}); "
                "give the CA that signed it in mqtt.tls.ca_file, and connect by the name or "
                "address the certificate is for (mqtt.host)")
    if isinstance(exc, ssl.SSLError):
        return (f"{url}: TLS handshake failed ({getattr(exc, 'reason', None) or exc}); is "
                f"port {m.port} the broker's TLS listener? (plain-text listeners are usually on "
                "1883: then set mqtt.tls.enabled: false)")
    if isinstance(exc, ConnectionRefusedError):
        return (f"{url}: connection refused; is the broker running and listening on port "
                f"{m.port}? (mqtt.host, mqtt.port)")
    if isinstance(exc, ConnectionResetError) and m.tls.enabled:
        return (f"{url}: the broker reset the connection during the TLS handshake; is port "
                f"{m.port} a plain-text listener? (then set mqtt.tls.enabled: false)")
    if isinstance(exc, socket.gaierror):
        return f"{url}: host {m.host!r} not found ({exc.strerror}); check mqtt.host"
    if isinstance(exc, TimeoutError):
        return (f"{url}: no answer within {m.connect_timeout_s:g} s (mqtt.connect_timeout_s); "
                "is the host reachable and the port right?")
    if isinstance(exc, OSError):
        return f"{url}: {exc.strerror or exc}"
    return f"{url}: {type(exc).__name__}: {exc}"


def closed_words(cfg: StationConfig, connected: bool, reason: ReasonCode | None,
                 client_id: str, from_server: bool) -> str:
    """Why a connection ended, in words."""
    url = broker_url(cfg)
    if not connected:
        if cfg.mqtt.tls.enabled:
            return (f"{url} closed the connection before answering CONNECT; does it require a "
                    "client certificate (mqtt.tls.cert_file and key_file)?")
        return (f"{url} closed the connection before answering CONNECT; if that listener is "
                "TLS-only, set mqtt.tls.enabled: true (and mqtt.port, usually 8883)")
    if reason is not None and reason.value == 0x8E:
        return (f"{url}: another client connected with the client id {client_id!r} and the "
                "broker closed this connection; do two processes share it? (mqtt.client_id, "
                "the station's name, collect.client_id)")
    if from_server and reason is not None:
        return f"{url} closed the connection: {reason} (0x{reason.value:02X})"
    return f"{url}: connection lost"


class _Client(mqtt.Client):
    """paho's client, but a failed TLS handshake closes its socket (paho 2.2 leaves it open
    until the garbage collector finds it). Only for our contexts: host names checked."""

    def _ssl_wrap_socket(self, tcp_sock: socket.socket) -> ssl.SSLSocket:
        context = self._ssl_context
        assert context is not None
        ssl_sock = context.wrap_socket(tcp_sock, server_hostname=self._host,
                                       do_handshake_on_connect=False)
        try:
            ssl_sock.settimeout(self._connect_timeout)
            ssl_sock.do_handshake()
        except BaseException:
            ssl_sock.close()
            raise
        return ssl_sock


class Link:
    """The connection to the broker: connect with backoff, ``loop()``, reconnect.

    The owner calls :meth:`step` from one thread (its own), and reads ``connected``,
    ``client`` (the current paho client, None between connections), ``generation``
    (incremented per connection: a message id belongs to one) and ``last_error``.
    ``on_connected(client, session_present, connack_properties)`` runs after a successful
    CONNACK; ``configure(client)`` sets the owner's callbacks (on_publish, on_message ...) on
    each new client; wrap them with :meth:`guard`.
    """

    def __init__(
        self, cfg: StationConfig, client_id: str, *, clean_start: bool, session_expiry_s: int,
        receive_maximum: int | None = None, will: tuple[str, bytes] | None = None,
        manual_ack: bool = False, on_connected: OnConnected | None = None,
        configure: Callable[[mqtt.Client], None] | None = None,
        password: str | None = None, tls: ssl.SSLContext | None = None,
    ) -> None:
        self.cfg = cfg
        self.client_id = client_id
        self.clean_start = clean_start
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.will = will
        self.manual_ack = manual_ack
        self.on_connected = on_connected
        self.configure = configure
        self.password = password
        self.tls = tls
        self.client: mqtt.Client | None = None
        self.connected = False
        self.generation = 0
        self.last_error: str | None = None
        self.since = time.time()  # wall time of the last change of ``connected``
        self._lock = threading.Lock()
        self._backoff = Backoff(cfg.mqtt.retry_first_s, cfg.mqtt.retry_max_s)
        self._next_attempt = 0.0
        self._attempt_started = 0.0
        self._failure: str | None = None  # set by callbacks, acted on by step()

    # --- what callbacks use --------------------------------------------------------------

    def guard(self, fn: Callable[..., None]) -> Callable[..., None]:
        """``fn`` as a paho callback that never raises: an exception drops the connection."""

        def wrapped(*args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:
                log.exception("mqtt callback failed", callback=getattr(fn, "__name__", "?"))
                self.fail(f"internal error in an MQTT callback: {type(exc).__name__}: {exc}")

        return wrapped

    def fail(self, reason: str) -> None:
        """Drop the connection at the next ``step`` (callable from callbacks) and say why; the
        first reason counts (a refused CONNACK is followed by the broker closing the socket)."""
        if self._failure is None:
            self._failure = reason

    # --- the owner's loop ----------------------------------------------------------------

    def step(self, timeout_s: float = 0.05) -> None:
        """One turn: connect when due, else run paho's loop for up to ``timeout_s``."""
        if self.client is None:
            wait = self._next_attempt - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, timeout_s))
                return
            self._connect()
            return
        rc = self.client.loop(timeout_s)
        if self._failure is not None:
            reason, self._failure = self._failure, None
            self.drop(reason)
            return
        if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS,) and self.client is not None:
            self.drop(closed_words(self.cfg, self.connected, None, self.client_id, False))
            return
        if (not self.connected and self.client is not None
                and time.monotonic() - self._attempt_started > self.cfg.mqtt.connect_timeout_s):
            self.drop(f"{broker_url(self.cfg)}: no CONNACK within "
                      f"{self.cfg.mqtt.connect_timeout_s:g} s (mqtt.connect_timeout_s)")

    def drop(self, reason: str, *, clean: bool = False) -> None:
        """Close the current connection (a DISCONNECT first when ``clean``), note ``reason``,
        and schedule the next attempt after the backoff."""
        client, self.client = self.client, None
        was = self.connected
        self.connected = False
        if client is not None:
            try:
                if clean:
                    client.disconnect()
                    client.loop(0.05)
                # paho has no public close: its sockets (and the wake-up socket pair) go now,
                # without the DISCONNECT that would cancel the last will
                client._reset_sockets()
            except Exception as exc:  # closing must not fail the owner
                log.debug("mqtt close failed", error=str(exc))
        if was:
            self.since = time.time()
        wait = self._backoff.next_wait()
        self._next_attempt = time.monotonic() + wait
        if clean:
            log.info("mqtt disconnected", broker=broker_url(self.cfg), reason=reason)
        elif reason != self.last_error or was:
            log.warning("mqtt connection down", broker=broker_url(self.cfg), reason=reason,
                        retry_in_s=round(wait, 2))
        self.last_error = reason

    def close(self, last: tuple[str, bytes] | None = None, flush_s: float = 1.0,
              pending: Callable[[], bool] | None = None) -> None:
        """Stop: publish ``last`` (topic, payload; retained, QoS 1) when connected, run the
        loop until ``pending()`` is false or ``flush_s`` passes, then DISCONNECT cleanly (no
        last will)."""
        client = self.client
        if client is None:
            return
        if self.connected and last is not None:
            client.publish(last[0], last[1], qos=1, retain=True)
        deadline = time.monotonic() + flush_s
        while (self.client is not None and self.connected and time.monotonic() < deadline
               and (pending is None or pending())):
            self.step(0.02)
        if self.client is not None:
            self.drop("stopped", clean=True)

    # --- connecting ----------------------------------------------------------------------

    def _new_client(self) -> mqtt.Client:
        c = _Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                    protocol=mqtt.MQTTv5, reconnect_on_failure=False,
                    manual_ack=self.manual_ack)
        c.connect_timeout = self.cfg.mqtt.connect_timeout_s
        if self.cfg.mqtt.username is not None:
            c.username_pw_set(self.cfg.mqtt.username, self.password)
        if self.tls is not None:
            c.tls_set_context(self.tls)
        if self.will is not None:
            c.will_set(self.will[0], self.will[1], qos=1, retain=True)
        c.max_queued_messages_set(0)
        c.on_connect = self.guard(self._on_connect)
        c.on_disconnect = self.guard(self._on_disconnect)
        if self.configure is not None:
            self.configure(c)
        return c

    def _connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.session_expiry_s
        if self.receive_maximum is not None:
            props.ReceiveMaximum = self.receive_maximum
        client = self._new_client()
        self._attempt_started = time.monotonic()
        try:
            client.connect(self.cfg.mqtt.host, self.cfg.mqtt.port, self.cfg.mqtt.keepalive_s,
                           clean_start=self.clean_start, properties=props)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            self.client = client
            self.drop(exception_words(self.cfg, exc))
            return
        self.client = client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Properties | None) -> None:
        if client is not self.client:
            return
        if reason.is_failure:
            self.fail(refusal_words(self.cfg, reason, self.client_id))
            return
        self.connected = True
        self.generation += 1
        self.since = time.time()
        self._backoff.reset()
        if self.last_error is not None:
            log.info("mqtt connected", broker=broker_url(self.cfg), client_id=self.client_id,
                     session_present=bool(flags.session_present))
        self.last_error = None
        if self.on_connected is not None:
            self.on_connected(client, bool(flags.session_present), properties)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Properties | None) -> None:
        if client is not self.client:
            return
        self.fail(closed_words(self.cfg, self.connected, reason, self.client_id,
                               bool(getattr(flags, "is_disconnect_packet_from_server", False))))
