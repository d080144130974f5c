"""Who may do what: read-only views are open from this machine; actions need the token.

- The token comes from ``$STATION_HMI_TOKEN`` or the file ``hmi.token_file``; with neither,
  actions are off (the pages say so).
- Signing in with the token sets a cookie holding an HMAC of it (never the token itself);
  scripts may instead send ``Authorization: Bearer <token>``.
- Views need nothing from a loopback client; from another machine they need the cookie too,
  unless ``hmi.public_views``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

from config.errors import ConfigError

COOKIE = "station_hmi"
TOKEN_ENV = "STATION_HMI_TOKEN"
MIN_TOKEN = 12


def load_token(token_file: Path | None, env: Mapping[str, str] | None = None) -> str | None:
    """The action token, or None when none is configured; ConfigError when it is unusable."""
    env = os.environ if env is None else env
    token = env.get(TOKEN_ENV)
    where = f"${TOKEN_ENV}"
    if token is None and token_file is not None:
        where = f"hmi.token_file {str(token_file)!r}"
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"{where}: cannot read it ({exc.strerror}); write the token into it "
                "(e.g. `openssl rand -hex 16 > FILE; chmod 600 FILE`) or unset hmi.token_file"
            ) from exc
    if token is None:
        return None
    token = token.strip()
    if len(token) < MIN_TOKEN:
        raise ConfigError(
            f"{where}: the token has {len(token)} characters; at least {MIN_TOKEN} are needed "
            "(e.g. `openssl rand -hex 16`)"
        )
    return token


def session_value(token: str) -> str:
    """The cookie value for a signed-in browser: an HMAC of the token, not the token."""
    return hmac.new(token.encode(), b"station-hmi-session-v1", hashlib.sha256).hexdigest()


def is_loopback(host: str | None) -> bool:
    """Whether a client address is this machine (127.0.0.0/8, ::1, localhost)."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Access:
    """The HMI's rules of access, given its token and ``hmi.public_views``."""

    def __init__(self, token: str | None, public_views: bool = False) -> None:
        self.token = token
        self.public_views = public_views

    @property
    def actions_enabled(self) -> bool:
        """Whether any token is configured (else actions are off)."""
        return self.token is not None

    def signed_in(self, cookie: str | None, authorization: str | None = None) -> bool:
        """Whether the request carries the session cookie or the bearer token."""
        if self.token is None:
            return False
        if cookie and hmac.compare_digest(cookie, session_value(self.token)):
            return True
        if authorization and authorization.startswith("Bearer "):
            return hmac.compare_digest(authorization[7:].strip(), self.token)
        return False

    def check_token(self, token: str) -> bool:
        """Whether ``token`` (typed at sign-in) is the token."""
        return self.token is not None and hmac.compare_digest(token.strip(), self.token)

    def may_view(self, client: str | None, cookie: str | None,
                 authorization: str | None = None) -> bool:
        """Read-only views: loopback clients always; others signed in, or public_views."""
        return self.public_views or is_loopback(client) or self.signed_in(cookie, authorization)
