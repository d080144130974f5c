"""The calibration store: versioned files on disk and the loader the daemon calls."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from config import StationConfig
from config.errors import CalibrationError
from station.calibration.store import (
    CURRENT_FILE,
    CalibrationRecord,
    CameraRecord,
    StepRecord,
    calibration_dir,
    list_calibrations,
    load_calibration,
    new_calibration_id,
    read_calibration,
    save_calibration,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _cfg(**calibration: object) -> StationConfig:
    return StationConfig.model_validate(
        {
            "cameras": [
                {"name": "cam0", "mm_per_px": 0.1},
                {"name": "cam1", "backend": "genicam", "genicam": {"serial_number": "SN-B"}},
            ],
            "calibration": calibration,
        }
    )


def _save(directory: Path, created: datetime = NOW, serial1: str = "SN-B", keep: int = 10) -> str:
    cal_id = new_calibration_id(created)
    dark = np.full((4, 6), 2.0, np.float32)
    flat = np.linspace(0.5, 1.5, 24, dtype=np.float32).reshape(4, 6)
    record = CalibrationRecord(
        calibration_id=cal_id,
        created=created,
        station="test",
        cameras={
            "cam0": CameraRecord(serial="SN-A", width=6, height=4, dark=True, flat=True,
                                 pixel_format="Mono8",
                                 mm_per_px=0.05,
                                 steps={"flat": StepRecord(status="PASS", measured={"u": 0.5})}),
            "cam1": CameraRecord(serial=serial1, width=6, height=4),
        },
    )
    save_calibration(directory, record, {"cam0": {"dark": dark, "flat": flat}}, keep=keep)
    return cal_id


def test_no_calibration_is_not_an_error(tmp_path: Path) -> None:
    """Without anything on disk the loader gives config fallbacks, no id, no warnings."""
    loaded = load_calibration(_cfg(), tmp_path)
    assert loaded.calibration_id is None
    assert loaded.usable and not loaded.warnings
    assert loaded.cameras["cam0"].mm_per_px == 0.1
    assert loaded.cameras["cam1"].mm_per_px is None
    assert loaded.cameras["cam0"].dark is None


def test_round_trip_maps_scale_and_id(tmp_path: Path) -> None:
    """What save_calibration writes, load_calibration returns per camera, with its id."""
    cal_id = _save(calibration_dir(_cfg(), tmp_path))
    loaded = load_calibration(_cfg(), tmp_path, now=NOW + timedelta(days=1))
    assert loaded.calibration_id == cal_id and loaded.usable and not loaded.warnings
    cam0 = loaded.cameras["cam0"]
    assert cam0.calibration_id == cal_id and cam0.mm_per_px == 0.05
    assert cam0.dark is not None and cam0.dark.dtype == np.float32 and cam0.dark.shape == (4, 6)
    assert cam0.flat is not None and float(cam0.flat[0, 0]) == pytest.approx(0.5)
    assert loaded.cameras["cam1"].dark is None and loaded.cameras["cam1"].mm_per_px is None
    assert loaded.record is not None
    assert loaded.record.cameras["cam0"].steps["flat"].status == "PASS"


def test_calibration_path_from_config(tmp_path: Path) -> None:
    """calibration.path names another directory than <data dir>/calibration."""
    cfg = _cfg(path=str(tmp_path / "elsewhere"))
    assert calibration_dir(cfg, tmp_path / "data") == tmp_path / "elsewhere"
    cal_id = _save(tmp_path / "elsewhere")
    assert load_calibration(cfg, tmp_path / "data", now=NOW).calibration_id == cal_id


def test_stale_is_a_warning_or_a_problem(tmp_path: Path) -> None:
    """Older than max_age_days: a warning; with refuse_stale also a problem (unusable)."""
    _save(tmp_path / "calibration")
    later = NOW + timedelta(days=31)
    loaded = load_calibration(_cfg(), tmp_path, now=later)
    assert loaded.usable
    assert any("max_age_days=30" in w and "31.0 days old" in w for w in loaded.warnings)
    refused = load_calibration(_cfg(refuse_stale=True), tmp_path, now=later)
    assert not refused.usable and "refuse_stale" in refused.problems[0]
    assert not refused.warnings, "a message is a warning or a problem, never both"
    with pytest.raises(CalibrationError, match="days old"):
        refused.require()


def test_foreign_serial_is_reported(tmp_path: Path) -> None:
    """A camera whose serial differs from the calibration's is named, with both serials."""
    _save(tmp_path / "calibration")
    loaded = load_calibration(_cfg(), tmp_path, now=NOW, serials={"cam0": "SN-OTHER"})
    assert loaded.usable
    [warning] = loaded.warnings
    assert "'cam0'" in warning and "'SN-A'" in warning and "'SN-OTHER'" in warning
    refused = load_calibration(_cfg(refuse_stale=True), tmp_path, now=NOW,
                               serials={"cam0": "SN-OTHER"})
    assert not refused.usable


def test_foreign_serial_from_config(tmp_path: Path) -> None:
    """A serial named in the config (genicam.serial_number) is compared without serials=."""
    _save(tmp_path / "calibration", serial1="SN-OLD")
    loaded = load_calibration(_cfg(refuse_stale=True), tmp_path, now=NOW)
    assert not loaded.usable and "'SN-OLD'" in loaded.problems[0]


def test_camera_missing_from_calibration_warns(tmp_path: Path) -> None:
    """A configured camera the calibration does not know is a warning, never a problem."""
    _save(tmp_path / "calibration")
    cfg = StationConfig.model_validate({
        "cameras": [{"name": "cam0"}, {"name": "cam9", "backend": "genicam"}],
        "calibration": {"refuse_stale": True},
    })
    loaded = load_calibration(cfg, tmp_path, now=NOW)
    assert loaded.usable and any("'cam9'" in w for w in loaded.warnings)


def test_corrupt_calibration_is_a_problem(tmp_path: Path) -> None:
    """An unreadable calibration is always a problem, naming the file, never an exception."""
    directory = tmp_path / "calibration"
    cal_id = _save(directory)
    (directory / cal_id / "calibration.json").write_text("{not json", encoding="utf-8")
    loaded = load_calibration(_cfg(), tmp_path, now=NOW)
    assert not loaded.usable and "calibration.json" in loaded.problems[0]
    assert loaded.cameras["cam0"].mm_per_px == 0.1


def test_missing_map_is_a_problem(tmp_path: Path) -> None:
    """A record announcing a map the .npz lacks is reported with the camera and map name."""
    directory = tmp_path / "calibration"
    cal_id = _save(directory)
    np.savez(directory / cal_id / "maps.npz", other=np.zeros(2))
    loaded = load_calibration(_cfg(), tmp_path, now=NOW)
    assert not loaded.usable and "dark map of camera 'cam0'" in loaded.problems[0]


def test_record_only_read_skips_the_maps(tmp_path: Path) -> None:
    """with_maps=False validates and returns the record without touching maps.npz."""
    directory = tmp_path / "calibration"
    cal_id = _save(directory)
    (directory / cal_id / "maps.npz").unlink()
    record, maps = read_calibration(directory, cal_id, with_maps=False)
    assert record.calibration_id == cal_id and maps == {}
    with pytest.raises(CalibrationError, match=r"maps\.npz"):
        read_calibration(directory, cal_id)


def test_newer_format_is_refused(tmp_path: Path) -> None:
    """A record from a future format version is not guessed at."""
    directory = tmp_path / "calibration"
    cal_id = _save(directory)
    path = directory / cal_id / "calibration.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["format_version"] = 99
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CalibrationError, match="format_version 99"):
        read_calibration(directory, cal_id)


def test_versions_are_kept_and_pruned(tmp_path: Path) -> None:
    """Each save is a new version in force; only the newest `keep` stay on disk."""
    directory = tmp_path / "calibration"
    ids = [_save(directory, NOW + timedelta(seconds=i), keep=2) for i in range(3)]
    assert list_calibrations(directory) == ids[1:]
    assert (directory / CURRENT_FILE).read_text(encoding="utf-8").strip() == ids[-1]
    assert load_calibration(_cfg(), tmp_path, now=NOW).calibration_id == ids[-1]


def test_bad_id_is_refused(tmp_path: Path) -> None:
    """An id that would escape the directory is refused, naming the rule."""
    record = CalibrationRecord(calibration_id="../x", created=NOW)
    with pytest.raises(CalibrationError, match="must start with 'cal-'"):
        save_calibration(tmp_path, record, {})


def test_maps_in_another_pixel_format_are_a_problem(tmp_path: Path) -> None:
    """Maps made in Mono8 while the config now asks for Mono12: the units differ, so it is
    a problem even without refuse_stale, naming both formats."""
    _save(tmp_path / "calibration")
    cfg = StationConfig.model_validate({
        "cameras": [{"name": "cam0", "replay": {"pixel_format": "Mono12"}}]})
    loaded = load_calibration(cfg, tmp_path, now=NOW)
    assert not loaded.usable
    assert "Mono8" in loaded.problems[0] and "Mono12" in loaded.problems[0]


def test_calibration_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """Calibration folders are 0750 and their files 0640, as the inspection store's."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        cal_id = _save(tmp_path / "data" / "calibration")
    finally:
        os.umask(old)
    root = tmp_path / "data" / "calibration"
    modes = {p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in [root, *root.rglob("*")]}
    assert modes.pop(".") == 0o750
    assert modes.pop(cal_id) == 0o750
    assert modes and set(modes.values()) == {0o640}, modes
