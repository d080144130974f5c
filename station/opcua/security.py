"""Who may talk to the OPC UA server: trusted client certificates, and users.

- :class:`TrustFolder`: a client's application certificate is trusted when the folder
  (``opcua.trust_dir``) holds that certificate, or the CA certificate that issued it. The folder
  is read at every check, so ``station keys --opcua --trust CERT`` takes effect without a
  restart; an empty folder trusts no one (asyncua's own TrustStore cannot be built empty).
- :func:`certificate_validator`: asyncua's CreateSession hook: time range, the application URI
  in the certificate equal to the one the client announces, trusted.
- :class:`StationUsers`: asyncua's user manager. asyncua asks it at ActivateSession on *every*
  channel, an unencrypted one (SecurityMode None) included, where a password would have
  travelled in clear: there every user token is refused. On an encrypted channel: a user
  name whose scrypt hash matches ``opcua.users_file``, or an X.509 user certificate from
  ``opcua.user_certs_dir``, or (``allow_anonymous``) no user; and the channel's client
  certificate must be trusted too (a client may skip CreateSession's certificate).

Refusals are logged once per user name or certificate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncua.ua
import structlog
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from config.errors import ConfigError
from station.keys import check_password, read_users

log = structlog.get_logger(__name__)
ua: Any = asyncua.ua  # typed loosely: its NewTypes make every literal an error under mypy

MAX_LOGGED = 1024


def _load(path: Path) -> x509.Certificate | None:
    try:
        data = path.read_bytes()
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except (OSError, ValueError) as exc:
        log.warning("not a certificate; ignored", path=str(path), error=str(exc))
        return None


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _label(cert: x509.Certificate) -> str:
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = str(cns[0].value) if cns else "?"
    return f"{name} (sha256 {cert.fingerprint(hashes.SHA256()).hex()[:16]})"


class _OnceLog:
    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def warn(self, key: str, event: str, **kw: Any) -> None:
        with self._lock:
            if key in self._seen or len(self._seen) >= MAX_LOGGED:
                return
            self._seen.add(key)
        log.warning(event + " (logged once)", **kw)


class TrustFolder:
    """Trusted client certificates: the files of one folder (DER or PEM), read at each check."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise ConfigError(
                f"opcua.trust_dir = {str(folder)!r}: no such folder; create it (empty trusts "
                "no client) or run `station keys --opcua --trust CLIENT_CERT`"
            )
        self.folder = folder
        self._once = _OnceLog()

    def certificates(self) -> list[x509.Certificate]:
        """Every certificate in the folder (unreadable files are logged and skipped)."""
        out = []
        for path in sorted(self.folder.iterdir()):
            if path.is_file() and path.suffix.lower() in (".der", ".pem", ".crt", ".cer"):
                cert = _load(path)
                if cert is not None:
                    out.append(cert)
        return out

    def is_trusted(self, cert: x509.Certificate) -> bool:
        """The certificate itself is in the folder, or a CA there issued it."""
        certs = self.certificates()
        der = _der(cert)
        if any(_der(c) == der for c in certs):
            return True
        for ca in certs:
            if ca.subject != cert.issuer:
                continue
            try:
                cert.verify_directly_issued_by(ca)
                return True
            except Exception:  # any failure to verify: not issued by this CA
                continue
        self._once.warn(der.hex()[:64], "OPC UA client certificate not trusted",
                        certificate=_label(cert), trust_dir=str(self.folder),
                        fix="station keys --opcua --trust CLIENT_CERT")
        return False


def certificate_validator(trust: TrustFolder) -> Callable[[x509.Certificate, Any], Any]:
    """asyncua's CreateSession certificate check: time, application URI, trust."""
    from datetime import UTC, datetime

    async def validate(cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        now = datetime.now(UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            log.warning("OPC UA client certificate outside its validity", certificate=_label(cert),
                        not_after=cert.not_valid_after_utc.isoformat())
            raise ServiceError(ua.StatusCodes.BadCertificateTimeInvalid)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        if app.ApplicationUri not in uris:
            log.warning("OPC UA client's application URI is not in its certificate",
                        announced=app.ApplicationUri, certificate_uris=uris)
            raise ServiceError(ua.StatusCodes.BadCertificateUriInvalid)
        if not trust.is_trusted(cert):
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    return validate


class StationUsers(UserManager):
    """The user manager: passwords, user certificates, anonymous; never on a None channel."""

    def __init__(
        self, trust: TrustFolder, users_file: Path | None, user_certs: Path | None,
        allow_anonymous: bool, allow_unsecured: bool,
    ) -> None:
        self.trust = trust
        self.users_file = users_file
        self.user_certs = user_certs
        self.allow_anonymous = allow_anonymous
        self.allow_unsecured = allow_unsecured
        self._once = _OnceLog()
        if users_file is not None:
            read_users(users_file)  # a broken file is a start-up error
        if user_certs is not None and not user_certs.is_dir():
            raise ConfigError(
                f"opcua.user_certs_dir = {str(user_certs)!r}: no such folder; create it or "
                "run `station keys --opcua --trust-user CERT`"
            )

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        """The user, or None to refuse (the client gets BadUserAccessDenied)."""
        try:
            return self._decide(username, password, certificate)
        except Exception as exc:  # a bug here must refuse, never let in
            log.exception("OPC UA user check failed; refused", error=str(exc))
            return None

    def _decide(self, username: str | None, password: str | None, certificate: Any
                ) -> User | None:
        cert = self._cert(certificate)
        if username is not None:
            if cert is None:
                self._once.warn(f"plain:{username}",
                                "OPC UA password login on an unencrypted channel refused",
                                user=username, fix="connect with Basic256Sha256 SignAndEncrypt")
                return None
            if not self.trust.is_trusted(cert):
                return None
            users = read_users(self.users_file) if self.users_file else {}
            record = users.get(username)
            if record is None or not check_password(record, password or ""):
                self._once.warn(f"user:{username}", "OPC UA login refused: unknown user or wrong "
                                "password", user=username)
                return None
            return User(role=UserRole.User, name=username)
        if cert is not None:
            user = self._user_certificate(cert)
            if user is not None:
                return user
            if self.allow_anonymous and self.trust.is_trusted(cert):
                return User(role=UserRole.User, name="anonymous")
            self._once.warn(f"cert:{_der(cert).hex()[:64]}",
                            "OPC UA session refused: no user, and the certificate is not a user "
                            "certificate", certificate=_label(cert))
            return None
        if self.allow_anonymous and self.allow_unsecured:
            return User(role=UserRole.User, name="anonymous")
        self._once.warn("anonymous-unsecured",
                        "OPC UA anonymous session on an unencrypted channel refused")
        return None

    @staticmethod
    def _cert(certificate: Any) -> x509.Certificate | None:
        if certificate is None:
            return None
        if isinstance(certificate, x509.Certificate):
            return certificate
        if isinstance(certificate, bytes | bytearray) and certificate:
            try:
                return x509.load_der_x509_certificate(bytes(certificate))
            except ValueError:
                return None
        return None

    def _user_certificate(self, cert: x509.Certificate) -> User | None:
        if self.user_certs is None:
            return None
        der = _der(cert)
        for path in sorted(self.user_certs.iterdir()):
            known = _load(path) if path.is_file() else None
            if known is not None and _der(known) == der:
                cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
                return User(role=UserRole.User, name=str(cns[0].value) if cns else path.stem)
        return None
