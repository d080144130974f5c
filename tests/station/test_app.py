"""Tests of station.app: assembling the daemon, and the calibration it applies."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import load_config
from station.app import build_daemon, with_exposure
from station.cli import main
from tests.e2e.conftest import free_port


def overrides() -> list[str]:
    return [f"messaging.command=tcp://127.0.0.1:{free_port()}",
            f"messaging.publish=tcp://127.0.0.1:{free_port()}"]


def test_calibration_is_loaded_and_exposure_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `capture --calibrate --yes`, the daemon names the calibration and sets exposure."""
    data = tmp_path / "data"
    assert main(["capture", "--calibrate", "--yes", "--data-dir", str(data),
                 "--steps", "exposure"]) == 0
    capsys.readouterr()
    cfg = load_config("default", overrides(), env={})
    daemon = build_daemon(cfg, data)
    try:
        assert daemon.calibration.calibration_id is not None
        assert not daemon.calibration.refuse_reasons
        cam = daemon.rig.cameras[0]
        assert cam.get_feature("ExposureTime") != 10_000.0  # the replay reference exposure
    finally:
        daemon.abort()


def test_calibration_exposure_can_be_switched_off(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """calibration.apply_exposure=false leaves the cameras' exposure alone."""
    data = tmp_path / "data"
    assert main(["capture", "--calibrate", "--yes", "--data-dir", str(data),
                 "--steps", "exposure"]) == 0
    capsys.readouterr()
    cfg = load_config("default", [*overrides(), "calibration.apply_exposure=false"], env={})
    daemon = build_daemon(cfg, data)
    try:
        assert daemon.rig.cameras[0].get_feature("ExposureTime") == 10_000.0
    finally:
        daemon.abort()


def test_genicam_cameras_get_calibrated_values_as_features() -> None:
    """For GenICam cameras the values join the configured features (applied on reopen too)."""
    cfg = load_config("genicam-sim", env={})
    new = with_exposure(cfg, {"cam0": {"ExposureTime": 1234.0, "Gain": 2.0}})
    assert new.cameras[0].genicam.features == {"PixelFormat": "Mono8", "ExposureTime": 1234.0,
                                               "Gain": 2.0}
    assert new.cameras[1].genicam.features == cfg.cameras[1].genicam.features
    assert new.base_dir == cfg.base_dir
