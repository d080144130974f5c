"""station.keys: CURVE pairs and role folders, OPC UA certificates, trust, passwords; files
with the right modes and nothing overwritten by accident."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from config.errors import ConfigError
from station.keys import (
    Layout,
    certificate_uri,
    check_password,
    client_pair,
    days_left,
    hash_password,
    make_opcua_certificate,
    read_certificate,
    read_users,
    server_pair,
    set_user,
    trust_certificate,
)
from station.messaging.curve import load_key_pair, load_public_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_curve_pairs_and_role_folders(tmp_path: Path) -> None:
    """The server pair is made once (kept on the second call), secrets are 0600, a client's
    public key lands in its role folder and matches its secret file."""
    layout = Layout(tmp_path / "keys")
    secret, made = server_pair(layout)
    assert made and mode(secret) == 0o600 and mode(layout.server_public) == 0o644
    first = load_key_pair(secret)
    assert server_pair(layout) == (secret, False)
    assert load_key_pair(secret) == first
    assert all(layout.role_dir(r).is_dir() for r in ("plc", "hmi", "admin"))
    client_secret, public = client_pair(layout, "plc1", "plc")
    assert public == layout.role_dir("plc") / "plc1.key"
    assert load_public_key(public) == load_key_pair(client_secret).public
    assert mode(client_secret) == 0o600
    with pytest.raises(ConfigError, match="exists"):
        client_pair(layout, "plc1", "plc")
    with pytest.raises(ConfigError, match="roles are"):
        client_pair(layout, "x", "root")
    with pytest.raises(ConfigError, match="letters"):
        client_pair(layout, "../evil", "plc")


def test_opcua_certificate_carries_uri_and_hosts(tmp_path: Path) -> None:
    """The certificate has the application URI and host names in its SAN, ten years of life,
    a 0600 key; trusting copies it as DER into the folder."""
    from cryptography import x509

    cert_path, key_path = tmp_path / "c.der", tmp_path / "k.pem"
    make_opcua_certificate(cert_path, key_path, "urn:x:y", ["booth-1", "10.0.0.5"], "booth-1")
    cert = read_certificate(cert_path)
    assert certificate_uri(cert) == "urn:x:y"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["booth-1"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert 3600 < days_left(cert) <= 3650
    assert mode(key_path) == 0o600
    target = trust_certificate(cert_path, tmp_path / "trusted")
    assert target.parent == tmp_path / "trusted" and target.read_bytes() == cert_path.read_bytes()
    with pytest.raises(ConfigError, match="exists"):
        make_opcua_certificate(cert_path, key_path, "urn:x:y", [], "again")


def test_trust_refuses_what_is_not_a_certificate(tmp_path: Path) -> None:
    """A file that is no certificate, or is missing: ConfigError naming it."""
    junk = tmp_path / "junk.der"
    junk.write_bytes(b"\x00" * 40)
    with pytest.raises(ConfigError, match=r"junk\.der"):
        trust_certificate(junk, tmp_path / "trusted")
    with pytest.raises(ConfigError, match="cannot read"):
        trust_certificate(tmp_path / "none.der", tmp_path / "trusted")


def test_passwords(tmp_path: Path) -> None:
    """scrypt records check the right password only; the users file is 0600, short passwords
    and a broken file are refused."""
    record = hash_password("correct-horse")
    assert check_password(record, "correct-horse")
    assert not check_password(record, "correct-hors")
    assert not check_password({"scheme": "md5"}, "x")
    assert not check_password({"scheme": "scrypt", "salt": "!!"}, "x")
    users = tmp_path / "users.json"
    assert set_user(users, "plc", "long-enough")
    assert not set_user(users, "plc", "another-one")
    assert mode(users) == 0o600
    assert check_password(read_users(users)["plc"], "another-one")
    with pytest.raises(ConfigError, match="at least"):
        set_user(users, "plc", "short")
    users.write_text("[]")
    with pytest.raises(ConfigError, match="not a users file"):
        read_users(users)
