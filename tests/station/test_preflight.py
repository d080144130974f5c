"""station.preflight: the files a config names, checked before anything slow loads (more cases
through the CLI: tests/station/test_cli.py)."""

from __future__ import annotations

from pathlib import Path

from config import load_config
from station.preflight import path_problems


def test_the_mqtt_files_are_checked_when_publishing(tmp_path: Path) -> None:
    """With mqtt on, a missing password file or TLS file is a problem naming the key and the
    resolved path; with mqtt off they are not looked at."""
    keys = [f"mqtt.password_file={tmp_path / 'pw'}", "mqtt.tls.enabled=true",
            f"mqtt.tls.ca_file={tmp_path / 'ca.pem'}"]
    on = path_problems(load_config("default", ["mqtt.enabled=true", *keys], env={}))
    assert any(p.startswith("mqtt.password_file = ") and "is not a file" in p for p in on)
    assert any(p.startswith("mqtt.tls.ca_file = ") for p in on)
    (tmp_path / "pw").write_text("x")
    (tmp_path / "ca.pem").write_text("x")
    assert path_problems(load_config("default", ["mqtt.enabled=true", *keys], env={})) == []
    assert path_problems(load_config("default", keys[:1], env={})) == []
