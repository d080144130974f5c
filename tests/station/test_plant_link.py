"""station.plant.link: the words of every way a broker connection fails, the password and TLS
settings, and callbacks that cannot kill the connection's thread. (Real connections to a real
broker: tests/station/test_plant_publisher.py.)"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from config import load_config
from config.errors import ConfigError
from tests.servers import skip_without

skip_without("paho.mqtt.client")
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.reasoncodes import ReasonCode  # noqa: E402

from station.plant import require_mqtt  # noqa: E402
from station.plant.link import (  # noqa: E402
    PASSWORD_ENV,
    Link,
    check_settings,
    closed_words,
    exception_words,
    read_password,
    refusal_words,
)


def cfg(*overrides: str) -> object:
    return load_config("default", ["mqtt.host=plant", "mqtt.port=8883", *overrides], env={})


def test_connack_refusals_name_the_keys_to_check() -> None:
    """0x87 and 0x86 point at the user and password, 0x85 at the client id."""
    c = cfg("mqtt.username=booth")
    text = refusal_words(c, ReasonCode(PacketTypes.CONNACK, identifier=0x87), "id")  # type: ignore[arg-type]
    assert "mqtt://plant:8883 refused the connection: Not authorized (0x87)" in text
    assert "mqtt.username" in text and PASSWORD_ENV in text and "'booth'" in text
    bad_id = refusal_words(c, ReasonCode(PacketTypes.CONNACK, identifier=0x85), "x/y")  # type: ignore[arg-type]
    assert "client id 'x/y'" in bad_id and "mqtt.client_id" in bad_id


@pytest.mark.parametrize(("exc", "words"), [
    (ConnectionRefusedError(111, "refused"), "connection refused; is the broker running"),
    (socket.gaierror(-2, "Name or service not known"), "host 'plant' not found"),
    (TimeoutError(), "no answer within 5 s (mqtt.connect_timeout_s)"),
    (ssl.SSLError(1, "wrong version number"), "is port 8883 the broker's TLS listener"),
])
def test_connection_failures_are_one_sentence_with_the_fix(exc: BaseException, words: str
                                                           ) -> None:
    """Refused, unknown host, time-out and a failed TLS handshake each say what to check."""
    assert words in exception_words(cfg("mqtt.tls.enabled=true"), exc)


def test_a_connection_closed_before_connack_suggests_tls_or_a_certificate() -> None:
    """Plain text: maybe the listener is TLS-only; with TLS: maybe it wants a certificate; a
    session taken over (0x8E) names the client id."""
    assert "TLS-only" in closed_words(cfg(), False, None, "id", False)
    assert "client certificate" in closed_words(cfg("mqtt.tls.enabled=true"), False, None,
                                                "id", False)
    taken = ReasonCode(PacketTypes.DISCONNECT, identifier=0x8E)  # type: ignore[arg-type]
    assert "another client connected with the client id 'station-b'" in closed_words(
        cfg(), True, taken, "station-b", True)


def test_the_password_comes_from_the_environment_or_its_file(tmp_path: Path) -> None:
    """$STATION_MQTT_PASSWORD wins; else the file's first line; a missing or empty file is a
    ConfigError naming the key."""
    pw = tmp_path / "pw"
    pw.write_text("s3cret\nignored\n")
    c = cfg(f"mqtt.password_file={pw}")
    assert read_password(c, {}) == "s3cret"
    assert read_password(c, {PASSWORD_ENV: "env"}) == "env"
    assert read_password(cfg(), {}) is None
    pw.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        read_password(c, {})
    with pytest.raises(ConfigError, match=r"mqtt\.password_file .*cannot read it"):
        read_password(cfg(f"mqtt.password_file={tmp_path / 'nope'}"), {})


def test_unusable_settings_are_refused_before_anything_slow(tmp_path: Path) -> None:
    """A CA file that is not PEM, a missing certificate, a missing password file: ConfigError
    from check_settings and from require_mqtt (what `station run` calls first)."""
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"mqtt\.tls\.ca_file"):
        check_settings(cfg("mqtt.tls.enabled=true", f"mqtt.tls.ca_file={junk}"))
    with pytest.raises(ConfigError, match="client certificate"):
        check_settings(cfg("mqtt.tls.enabled=true", f"mqtt.tls.cert_file={tmp_path / 'c'}",
                           f"mqtt.tls.key_file={tmp_path / 'k'}"))
    with pytest.raises(ConfigError, match=r"mqtt\.password_file"):
        require_mqtt(cfg("mqtt.enabled=true", f"mqtt.password_file={tmp_path / 'none'}"))


def test_a_guarded_callback_never_raises_and_drops_the_connection_once() -> None:
    """An exception inside a guarded callback is caught; the link notes it and keeps the first
    reason when a second failure follows (a refused CONNACK, then the socket closing)."""
    link = Link(cfg(), "id", clean_start=True, session_expiry_s=0)

    def boom() -> None:
        raise RuntimeError("injected")

    link.guard(boom)()
    link.fail("second")
    assert link._failure == "internal error in an MQTT callback: RuntimeError: injected"
