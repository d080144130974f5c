"""Tests of station.hmi.auth: the token, sessions, who may view and act."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ConfigError
from station.hmi.auth import TOKEN_ENV, Access, is_loopback, load_token, session_value

TOKEN = "0123456789abcdef"


def test_token_from_the_environment_or_a_file(tmp_path: Path) -> None:
    """The variable wins over the file; neither means no token (actions off)."""
    f = tmp_path / "token"
    f.write_text(f"  {TOKEN}\n")
    assert load_token(f, {}) == TOKEN
    assert load_token(f, {TOKEN_ENV: "from-the-environment"}) == "from-the-environment"
    assert load_token(None, {}) is None


def test_unusable_tokens_are_config_errors(tmp_path: Path) -> None:
    """A missing file or a short token is refused with the fix."""
    with pytest.raises(ConfigError, match="cannot read it"):
        load_token(tmp_path / "missing", {})
    with pytest.raises(ConfigError, match="at least 12"):
        load_token(None, {TOKEN_ENV: "short"})


def test_loopback_addresses() -> None:
    """127.0.0.0/8, ::1 and localhost are this machine; others and rubbish are not."""
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("10.0.0.5", "::ffff:10.0.0.5", "", None, "x"))


def test_views_and_actions() -> None:
    """Views: loopback always, others signed in or public; actions: only signed in."""
    access = Access(TOKEN)
    cookie = session_value(TOKEN)
    assert cookie != TOKEN and TOKEN not in cookie
    assert access.may_view("127.0.0.1", None)
    assert not access.may_view("10.0.0.5", None)
    assert access.may_view("10.0.0.5", cookie)
    assert access.may_view("10.0.0.5", None, f"Bearer {TOKEN}")
    assert Access(TOKEN, public_views=True).may_view("10.0.0.5", None)
    assert access.signed_in(cookie) and access.signed_in(None, f"Bearer {TOKEN}")
    assert not access.signed_in("forged") and not access.signed_in(None, "Bearer nope")
    assert not access.signed_in(None, TOKEN)  # a bare token is not a bearer header
    assert access.check_token(f" {TOKEN} ") and not access.check_token("guess")


def test_without_a_token_nobody_acts() -> None:
    """No token configured: actions are off and no cookie signs in."""
    access = Access(None)
    assert not access.actions_enabled and not access.signed_in(session_value("x"))
    assert not access.check_token("")
