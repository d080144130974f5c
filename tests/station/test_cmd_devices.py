"""``station devices`` against the real viky.cti producer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from drivers.cameras._cti import GENTL_PATH_VAR, viky_cti
from station.cli import main


def test_lists_vikys_devices_with_the_configured_cameras(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """genicam-sim's two cameras are shown against viky's devices, opened to check create."""
    assert main(["devices", "--config", "genicam-sim", "--open"]) == 0
    out = capsys.readouterr().out
    assert str(viky_cti().resolve()) in out
    for serial, ident in (("0", "VikyTL_DEV_red"), ("1", "VikyTL_DEV_green"),
                          ("2", "VikyTL_DEV_blue")):
        assert f"serial: {serial}   id: {ident}" in out
    assert "configured as: cam0" in out and "configured as: cam1" in out
    assert out.count("open: ok") == 3
    assert "Machine Vision Games Ltd. Viky" in out
    assert "access: available (read/write)" in out


def test_cti_option_and_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    """--cti viky --json (workers under an explicit --python) gives one producer with three
    devices, machine-readable."""
    assert main(["devices", "--cti", "viky", "--json", "--python", sys.executable]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["error"] is None
    assert [d["serial_number"] for d in report["devices"]] == ["0", "1", "2"]
    assert {"vendor", "model", "id", "access_status"} <= set(report["devices"][0])


def test_honours_genicam_gentl64_path(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a replay-only config, the producers of GENICAM_GENTL64_PATH are listed."""
    monkeypatch.setenv(GENTL_PATH_VAR, str(viky_cti().parent))
    assert main(["devices", "--config", "default"]) == 0
    assert "VikyTL_DEV_blue" in capsys.readouterr().out


def test_no_producer_and_missing_or_broken_producers(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No producer at all, a missing file and a file that is no producer each say so."""
    monkeypatch.delenv(GENTL_PATH_VAR, raising=False)
    assert main(["devices", "--config", "default"]) == 1
    assert "no GenTL producer to ask" in capsys.readouterr().err
    assert main(["devices", "--cti", str(tmp_path / "gone.cti")]) == 1
    assert "gone.cti' not found" in capsys.readouterr().err
    fake = tmp_path / "fake.cti"
    fake.write_bytes(b"not a shared library")
    assert main(["devices", "--cti", str(fake)]) == 1
    out = capsys.readouterr().out
    assert "fake.cti" in out and "error:" in out
