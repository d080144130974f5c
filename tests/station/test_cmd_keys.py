"""``station keys`` as a user runs it: CURVE pairs, a client per role, the OPC UA
certificate, trust and users, and the config lines it prints."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from station.cli import main
from station.keys import Layout, certificate_uri, read_certificate, read_users


def test_curve_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`station keys --dir` then `--client NAME --role plc`: files and the config to set."""
    root = tmp_path / "keys"
    assert main(["keys", "--dir", str(root)]) == 0
    assert main(["keys", "--dir", str(root), "--client", "plc1", "--role", "plc"]) == 0
    out = capsys.readouterr().out
    assert f"server_secret_key: {root / 'server.key_secret'}" in out
    assert (root / "plc" / "plc1.key").is_file()
    assert main(["keys", "--dir", str(root), "--client", "x"]) == 2
    assert "--role" in capsys.readouterr().err


def test_opcua_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`--opcua` makes the certificate for the station's URI; `--client` makes and trusts a
    client certificate; `--user` reads the password from stdin; `--trust` needs a real file."""
    layout = Layout(tmp_path / "keys")
    base = ["keys", "--opcua", "--dir", str(layout.root), "--set", "name=booth-7"]
    assert main(base) == 0
    assert certificate_uri(read_certificate(layout.opcua_cert)) == "urn:inspection-station:booth-7"
    assert main([*base, "--client", "plc1"]) == 0
    assert len(list(layout.opcua_trusted.iterdir())) == 1
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    assert main([*base, "--user", "plc", "--password-stdin"]) == 0
    assert set(read_users(layout.opcua_users)) == {"plc"}
    out = capsys.readouterr().out
    assert f"trust_dir: {layout.opcua_trusted}" in out
    assert main([*base, "--trust", str(tmp_path / "missing.der")]) == 2
    assert "missing.der" in capsys.readouterr().err
