"""Tests of systemd/station.service with the real systemd-analyze."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "station.service"
needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@needs_systemd
def test_unit_verifies() -> None:
    """`systemd-analyze verify` accepts the unit as shipped."""
    res = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == ""


def test_unit_has_the_required_settings() -> None:
    """Type=notify, a watchdog, restart on failure, a dedicated user, the shipped command."""
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=10", "Restart=on-failure", "User=station",
                 "station run --config /etc/station/station.yaml", "NoNewPrivileges=yes",
                 "ProtectSystem=strict"):
        assert line in text, line


@needs_systemd
def test_security_exposure_is_ok() -> None:
    """`systemd-analyze security --offline=true` rates the unit below 2.0 (OK)."""
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)],
        capture_output=True, text=True, timeout=60,
    )
    line = [ln for ln in res.stdout.splitlines() if "Overall exposure level" in ln]
    assert line, res.stdout + res.stderr
    score = float(line[0].split(":")[1].split()[0])
    assert score < 2.0, line[0]
