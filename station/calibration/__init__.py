"""Booth calibration: the steps of ``station capture --calibrate`` and the calibration store.

The daemon calls :func:`load_calibration` (``station.calibration.store``)::

    loaded = load_calibration(cfg, data_dir, serials={"cam0": "SN123"})
    loaded.cameras["cam0"]        # pipeline.types.CameraCalibration (dark, flat, mm_per_px, id)
    loaded.calibration_id         # None when no calibration is on disk (not an error)
    loaded.warnings, loaded.problems, loaded.usable
"""

from station.calibration.store import (
    CalibrationRecord,
    CameraRecord,
    LoadedCalibration,
    StepRecord,
    calibration_dir,
    load_calibration,
    new_calibration_id,
    read_calibration,
    save_calibration,
)

__all__ = [
    "CalibrationRecord",
    "CameraRecord",
    "LoadedCalibration",
    "StepRecord",
    "calibration_dir",
    "load_calibration",
    "new_calibration_id",
    "read_calibration",
    "save_calibration",
]
