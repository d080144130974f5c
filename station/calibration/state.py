"""The calibration in force as the daemon uses it: the cycle's state, and the exposure.

Used at start-up (``station.app.build_daemon``) and by ``reload`` (``station.reload``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config import StationConfig
from station.cycle import CalibrationState


def load_calibration_state(
    cfg: StationConfig, data_dir: Path, serials: dict[str, str | None] | None = None
) -> tuple[CalibrationState, dict[str, Any]]:
    """The booth calibration for the cycle, and what ``status`` reports about it.

    ``problems`` (unreadable; stale or foreign with ``calibration.refuse_stale``) make every
    inspection ERROR; ``warnings`` show in ``status``.
    """
    from station.calibration import load_calibration

    loaded = load_calibration(cfg, data_dir, serials=serials)
    state = CalibrationState(
        calibration_id=loaded.calibration_id,
        cameras=dict(loaded.cameras),
        refuse_reasons=list(loaded.problems),
    )
    info: dict[str, Any] = {
        "warnings": [w for w in loaded.warnings if w not in loaded.problems],
        "age_days": None if loaded.age_days is None else round(loaded.age_days, 2),
        "path": None if loaded.path is None else str(loaded.path),
    }
    return state, info


def calibrated_exposure(cfg: StationConfig, data_dir: Path) -> dict[str, dict[str, float]]:
    """Camera name -> {"ExposureTime": µs, "Gain": dB} from the calibration in force.

    Empty when there is none, it is unreadable, or ``calibration.apply_exposure`` is off.
    """
    from config.errors import CalibrationError
    from station.calibration.store import calibration_dir, current_id, read_calibration

    if not cfg.calibration.apply_exposure:
        return {}
    directory = calibration_dir(cfg, data_dir)
    try:
        cal_id = current_id(directory)
        if cal_id is None:
            return {}
        # The record only: the maps are read once, by load_calibration after the cameras open.
        record, _ = read_calibration(directory, cal_id, with_maps=False)
    except (OSError, CalibrationError):
        return {}  # load_calibration reports what is wrong with it
    out: dict[str, dict[str, float]] = {}
    for name, cam in record.cameras.items():
        values = {"ExposureTime": cam.exposure_us, "Gain": cam.gain_db}
        kept = {k: float(v) for k, v in values.items() if v is not None}
        if kept:
            out[name] = kept
    return out
