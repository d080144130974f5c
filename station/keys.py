"""Key and certificate files for the line's side: CURVE key pairs and OPC UA certificates.

Layout under one folder (``station keys --dir DIR``)::

    DIR/server.key, server.key_secret        the station's CURVE pair (secret: mode 0600)
    DIR/clients/NAME.key, NAME.key_secret    a client's pair: hand NAME.key_secret to the client
    DIR/plc/ DIR/hmi/ DIR/admin/             role folders: the public keys that may connect
    DIR/opcua/server-cert.der                the OPC UA server certificate (DER)
    DIR/opcua/server-key.pem                 its private key (PEM, mode 0600)
    DIR/opcua/trusted/                       trusted client (application) certificates
    DIR/opcua/user-certs/                    certificates accepted as X.509 user tokens
    DIR/opcua/users.json                     user names and scrypt password hashes
    DIR/opcua/clients/NAME-cert.der, NAME-key.pem   a client certificate made here

Files are written with ``os.open(..., 0o600)`` (secrets) or 0644 and folders 0750, whatever
the umask. Nothing is overwritten unless asked (``force``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import zmq.auth

from config.errors import ConfigError

#: scrypt parameters for OPC UA passwords (about 16 MiB and tens of ms per check).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_PASSWORD = 8


@dataclass(frozen=True)
class Layout:
    """Every path of the key folder."""

    root: Path

    @property
    def server_public(self) -> Path:
        return self.root / "server.key"

    @property
    def server_secret(self) -> Path:
        return self.root / "server.key_secret"

    def role_dir(self, role: str) -> Path:
        return self.root / role

    @property
    def clients(self) -> Path:
        return self.root / "clients"

    @property
    def opcua(self) -> Path:
        return self.root / "opcua"

    @property
    def opcua_cert(self) -> Path:
        return self.opcua / "server-cert.der"

    @property
    def opcua_key(self) -> Path:
        return self.opcua / "server-key.pem"

    @property
    def opcua_trusted(self) -> Path:
        return self.opcua / "trusted"

    @property
    def opcua_user_certs(self) -> Path:
        return self.opcua / "user-certs"

    @property
    def opcua_users(self) -> Path:
        return self.opcua / "users.json"

    @property
    def opcua_clients(self) -> Path:
        return self.opcua / "clients"


def check_name(name: str, what: str = "name") -> str:
    """A file-safe name (letters, digits, ``_ . -``), or ``ConfigError``."""
    if not NAME_RE.match(name):
        raise ConfigError(
            f"{what} {name!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a "
            "letter or digit"
        )
    return name


def _mkdir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o750)


def _write(path: Path, data: bytes, secret: bool, force: bool) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 (secret) or 0644."""
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; remove it or pass --force to replace it")
    _mkdir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600 if secret else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- CURVE ---------------------------------------------------------------------------------


def make_curve_pair(folder: Path, name: str, force: bool = False) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` (pyzmq's ``zmq.auth`` format) in ``folder``."""
    check_name(name)
    public_path, secret_path = folder / f"{name}.key", folder / f"{name}.key_secret"
    for p in (public_path, secret_path):
        if p.exists() and not force:
            raise ConfigError(f"{p} exists; remove it or pass --force to replace it")
    with tempfile.TemporaryDirectory() as tmp:
        pub, sec = zmq.auth.create_certificates(tmp, name)
        _write(public_path, Path(pub).read_bytes(), secret=False, force=force)
        _write(secret_path, Path(sec).read_bytes(), secret=True, force=force)
    return public_path, secret_path


def server_pair(layout: Layout, force: bool = False) -> tuple[Path, bool]:
    """The station's pair: made when missing (or with ``force``); returns (secret, made)."""
    if layout.server_secret.exists() and not force:
        return layout.server_secret, False
    make_curve_pair(layout.root, "server", force=force)
    for role in ("plc", "hmi", "admin"):
        _mkdir(layout.role_dir(role))
    return layout.server_secret, True


def client_pair(layout: Layout, name: str, role: str, force: bool = False) -> tuple[Path, Path]:
    """A client's pair in ``clients/``, its public key copied into the role folder."""
    if role not in ("plc", "hmi", "admin"):
        raise ConfigError(f"--role {role!r}: roles are plc, hmi, admin")
    public, secret = make_curve_pair(layout.clients, name, force=force)
    target = layout.role_dir(role) / public.name
    _write(target, public.read_bytes(), secret=False, force=force)
    return secret, target


# --- OPC UA certificates ---------------------------------------------------------------------


def _crypto() -> Any:
    try:
        from asyncua.crypto import cert_gen  # noqa: F401  (the extra's marker)
        from cryptography import x509
    except ImportError as exc:
        raise ConfigError(
            "OPC UA needs the optional extra: pip install 'inspection-station[opcua]' "
            f"({exc})"
        ) from exc
    return x509


def make_opcua_certificate(
    cert_path: Path, key_path: Path, application_uri: str, hostnames: list[str],
    common_name: str, *, client: bool = False, days: int = 3650, force: bool = False,
) -> None:
    """A self-signed OPC UA application certificate (RSA 2048, SHA-256) and its key.

    The subject alternative name holds the application URI, every host name and every IP
    address given: OPC UA clients check the URI, many check the host. ``client``: a client
    certificate (extended key usage clientAuth) instead of a server one.
    """
    x509 = _crypto()
    import ipaddress

    from asyncua.crypto import cert_gen
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    for p in (cert_path, key_path):
        if p.exists() and not force:
            raise ConfigError(f"{p} exists; remove it or pass --force to replace it")
    sans: list[Any] = [x509.UniformResourceIdentifier(application_uri)]
    for host in dict.fromkeys(hostnames):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    key = cert_gen.generate_private_key()
    usage = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = cert_gen.generate_self_signed_app_certificate(
        key, common_name, {"organizationName": "inspection-station"}, sans, extended=usage,
        days=days,
    )
    _write(key_path, cert_gen.dump_private_key_as_pem(key), secret=True, force=force)
    _write(cert_path, cert.public_bytes(serialization.Encoding.DER), secret=False, force=force)


def default_hostnames(endpoint_host: str | None) -> list[str]:
    """Names a server certificate should carry: the endpoint's host, this host, loopback."""
    names = [h for h in (endpoint_host, socket.gethostname(), socket.getfqdn(), "localhost",
                         "127.0.0.1") if h and h not in ("0.0.0.0", "::")]
    return list(dict.fromkeys(names))


def read_certificate(path: Path) -> Any:
    """Load a DER or PEM certificate; ``ConfigError`` names the file when it is neither."""
    x509 = _crypto()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the certificate ({exc.strerror})") from exc
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a DER or PEM X.509 certificate ({exc})") from exc


def certificate_uri(cert: Any) -> str | None:
    """The application URI in a certificate's subject alternative name, if any."""
    x509 = _crypto()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return str(uris[0]) if uris else None


def certificate_name(cert: Any) -> str:
    """The certificate's common name, or its fingerprint when it has none."""
    x509 = _crypto()
    from cryptography.hazmat.primitives import hashes

    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if cns:
        return str(cns[0].value)
    return str(cert.fingerprint(hashes.SHA256()).hex()[:16])


def trust_certificate(cert_path: Path, folder: Path, force: bool = False) -> Path:
    """Copy a client certificate into a trust folder as DER; returns the file written."""
    from cryptography.hazmat.primitives import hashes, serialization

    cert = read_certificate(cert_path)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", certificate_name(cert))[:48]
    thumb = cert.fingerprint(hashes.SHA1()).hex()[:12]  # a file label, not security
    target = folder / f"{name}-{thumb}.der"
    _mkdir(folder)
    _write(target, cert.public_bytes(serialization.Encoding.DER), secret=False,
           force=True if target.exists() else force)
    return target


def write_pem_copy(der_path: Path) -> Path:
    """A PEM copy of a DER certificate beside it (``x.der`` -> ``x.pem``), for PEM clients."""
    from cryptography.hazmat.primitives import serialization

    cert = read_certificate(der_path)
    target = der_path.with_suffix(".pem")
    _write(target, cert.public_bytes(serialization.Encoding.PEM), secret=False, force=True)
    return target


def expiry(cert: Any) -> datetime:
    """When a certificate stops being valid (UTC)."""
    value: datetime = cert.not_valid_after_utc
    return value


def days_left(cert: Any, now: datetime | None = None) -> float:
    """Days until the certificate expires (negative when it has)."""
    now = now or datetime.now(UTC)
    return (expiry(cert) - now) / timedelta(days=1)


# --- OPC UA users --------------------------------------------------------------------------


def hash_password(password: str, salt: bytes | None = None) -> dict[str, Any]:
    """An scrypt record of a password (what users.json stores)."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=32)
    return {"scheme": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
            "salt": base64.b64encode(salt).decode(), "hash": base64.b64encode(digest).decode()}


def check_password(record: dict[str, Any], password: str) -> bool:
    """True when ``password`` matches the stored record (constant-time comparison)."""
    if record.get("scheme") != "scrypt":
        return False
    try:
        salt = base64.b64decode(record["salt"])
        want = base64.b64decode(record["hash"])
        got = hashlib.scrypt(password.encode(), salt=salt, n=int(record["n"]),
                             r=int(record["r"]), p=int(record["p"]), dklen=len(want))
    except (KeyError, ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def read_users(path: Path) -> dict[str, dict[str, Any]]:
    """The users file: ``{"users": {name: record}}``; ``ConfigError`` when unreadable."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        users = data["users"]
        if not isinstance(users, dict) or not all(isinstance(v, dict) for v in users.values()):
            raise TypeError("'users' must map names to records")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: not a users file ({exc}); it is written by `station keys --opcua --user "
            "NAME`"
        ) from exc
    return {str(k): v for k, v in users.items()}


def set_user(path: Path, name: str, password: str) -> bool:
    """Add or replace a user; returns True when the user is new."""
    check_name(name, "user name")
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the password has {len(password)} characters; use at least "
                          f"{MIN_PASSWORD}")
    users = read_users(path)
    new = name not in users
    users[name] = hash_password(password)
    _write(path, (json.dumps({"users": users}, indent=2) + "\n").encode(), secret=True,
           force=True)
    return new


