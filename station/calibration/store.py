"""Versioned booth calibrations on disk, and the loader the daemon calls.

Layout of the calibration directory (``calibration.path`` of the config, else
``<data dir>/calibration``)::

    current                                   one line: the id of the calibration in force
    cal-20261122T163500Z-1a2b3c/
        calibration.json                      CalibrationRecord (ids, date, serials, settings)
        maps.npz                              "<camera>.dark", "<camera>.flat" (float32)

A calibration is written into a hidden temporary directory and renamed into place, then
``current`` is replaced atomically, so a reader never sees half a calibration. The newest
``calibration.keep`` calibrations are kept; older ones are deleted.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from config.cameras import CameraConfig
from config.errors import CalibrationError
from config.schema import StationConfig
from pipeline.types import CameraCalibration

log = structlog.get_logger(__name__)

#: Bumped when the layout of calibration.json or maps.npz changes incompatibly.
FORMAT_VERSION = 1
RECORD_FILE = "calibration.json"
MAPS_FILE = "maps.npz"
CURRENT_FILE = "current"
ID_PREFIX = "cal-"

StepStatus = Literal["PASS", "FAIL", "SKIP"]
Measured = dict[str, float | int | str | bool | None]


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class StepRecord(_Record):
    """The outcome of one step for one camera, as stored."""

    status: StepStatus
    message: str = ""
    measured: Measured = Field(default_factory=dict)
    #: the calibration run that measured it (an older id when carried over)
    calibration_id: str = ""


class CameraRecord(_Record):
    """What a calibration knows about one camera."""

    serial: str | None = None
    model: str | None = None
    backend: str = ""
    pixel_format: str | None = None
    width: int | None = None
    height: int | None = None
    exposure_us: float | None = None
    gain_db: float | None = None
    focus_score: float | None = None
    uniformity: float | None = None
    mm_per_px: float | None = None
    camera_matrix: list[list[float]] | None = None
    distortion: list[float] | None = None
    dark: bool = False
    flat: bool = False
    steps: dict[str, StepRecord] = Field(default_factory=dict)


class CalibrationRecord(_Record):
    """The JSON half of a calibration: stamped with its id, date, serials and settings."""

    format_version: int = FORMAT_VERSION
    calibration_id: str
    created: datetime
    station: str = ""
    software: str = ""
    cameras: dict[str, CameraRecord] = Field(default_factory=dict)
    #: the calibration config and light intensities in force when it was made
    settings: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class LoadedCalibration:
    """What the daemon gets from :func:`load_calibration`.

    ``cameras`` has an entry for *every configured camera*: maps and scale from the calibration
    where it has them, ``mm_per_px`` falling back to ``cameras[].mm_per_px`` of the config
    (``None``: areas in px only). ``calibration_id`` is ``None`` when no calibration is on disk
    (not an error). ``warnings``: worth showing in ``status`` but no reason to refuse (stale or
    foreign without ``calibration.refuse_stale``, cameras the calibration lacks).
    ``problems``: reasons every inspection must be an ERROR (an unreadable calibration, or
    maps made in another pixel format than the config now asks for, always; stale or foreign
    ones with ``calibration.refuse_stale``). A message is in one
    list or the other, never both.
    """

    calibration_id: str | None
    cameras: dict[str, CameraCalibration]
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    created: datetime | None = None
    path: Path | None = None
    record: CalibrationRecord | None = None

    @property
    def usable(self) -> bool:
        """True when inspections may run with this calibration (no problems)."""
        return not self.problems

    @property
    def age_days(self) -> float | None:
        """Age of the calibration in days (now, UTC), or ``None`` without one."""
        if self.created is None:
            return None
        return (datetime.now(UTC) - self.created).total_seconds() / 86400.0

    def require(self) -> None:
        """Raise ``CalibrationError`` listing the problems, if there are any."""
        if self.problems:
            raise CalibrationError("; ".join(self.problems))


def calibration_dir(cfg: StationConfig, data_dir: Path) -> Path:
    """Where calibrations live: ``calibration.path`` (relative to the config file) or
    ``<data_dir>/calibration``."""
    if cfg.calibration.path:
        return cfg.resolve(cfg.calibration.path)
    return Path(data_dir) / "calibration"


def new_calibration_id(now: datetime | None = None) -> str:
    """A fresh, time-sortable id like ``cal-20261122T163500Z-1a2b3c``."""
    now = now or datetime.now(UTC)
    return f"{ID_PREFIX}{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def list_calibrations(directory: Path) -> list[str]:
    """Ids of the complete calibrations in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(
        p.name for p in directory.iterdir()
        if p.is_dir() and p.name.startswith(ID_PREFIX) and (p / RECORD_FILE).is_file()
    )


def current_id(directory: Path) -> str | None:
    """The id in force: the ``current`` file, else the newest calibration, else ``None``."""
    pointer = directory / CURRENT_FILE
    if pointer.is_file():
        text = pointer.read_text(encoding="utf-8").strip()
        if text:
            return text
    ids = list_calibrations(directory)
    return ids[-1] if ids else None


def save_calibration(
    directory: Path,
    record: CalibrationRecord,
    maps: Mapping[str, Mapping[str, npt.NDArray[np.float32]]],
    keep: int = 10,
) -> Path:
    """Write ``record`` and its ``maps`` ({camera: {"dark"|"flat": array}}) atomically, make it
    the calibration in force, prune to the newest ``keep``; return its directory."""
    if not record.calibration_id.startswith(ID_PREFIX) or "/" in record.calibration_id:
        raise CalibrationError(
            f"calibration_id {record.calibration_id!r}: must start with {ID_PREFIX!r} and "
            "contain no '/'"
        )
    from station.store import DIR_MODE, FILE_MODE, private_dir

    private_dir(directory)  # 0750 whatever the umask, files 0640 (as the inspection store)
    final = directory / record.calibration_id
    if final.exists():
        raise CalibrationError(f"calibration {record.calibration_id!r} already exists in {final}")
    tmp = directory / f".{record.calibration_id}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    os.chmod(tmp, DIR_MODE)
    arrays: dict[str, npt.NDArray[np.float32]] = {}
    for cam, cam_maps in maps.items():
        for kind, arr in cam_maps.items():
            if kind not in ("dark", "flat"):
                raise CalibrationError(f"maps[{cam!r}]: key {kind!r} is not 'dark' or 'flat'")
            arrays[f"{cam}.{kind}"] = np.ascontiguousarray(arr, dtype=np.float32)
    with open(os.open(tmp / MAPS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE),
              "wb") as fh:
        os.fchmod(fh.fileno(), FILE_MODE)
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
        fh.flush()
        os.fsync(fh.fileno())
    text = json.dumps(record.model_dump(mode="json"), indent=2, sort_keys=True)
    with open(os.open(tmp / RECORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE),
              "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), FILE_MODE)
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    pointer_tmp = directory / f".{CURRENT_FILE}.tmp"
    pointer_tmp.write_text(record.calibration_id + "\n", encoding="utf-8")
    os.chmod(pointer_tmp, FILE_MODE)
    os.replace(pointer_tmp, directory / CURRENT_FILE)
    for old in list_calibrations(directory)[:-keep] if keep > 0 else []:
        if old != record.calibration_id:
            shutil.rmtree(directory / old, ignore_errors=True)
            log.info("calibration.pruned", calibration_id=old)
    log.info("calibration.saved", calibration_id=record.calibration_id, path=str(final))
    return final


def read_calibration(
    directory: Path, calibration_id: str, *, with_maps: bool = True
) -> tuple[CalibrationRecord, dict[str, dict[str, npt.NDArray[np.float32]]]]:
    """Read one calibration; ``CalibrationError`` says which file is wrong and how.

    ``with_maps=False`` reads and validates the record only (the maps can be hundreds of MB).
    """
    where = directory / calibration_id
    rec_path = where / RECORD_FILE
    try:
        raw = json.loads(rec_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CalibrationError(
            f"calibration {calibration_id!r}: {rec_path} is missing (named by "
            f"{directory / CURRENT_FILE}); run `station capture --calibrate`"
        ) from exc
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"calibration {calibration_id!r}: cannot read {rec_path}: {exc}") \
            from exc
    try:
        record = CalibrationRecord.model_validate(raw)
    except ValidationError as exc:
        raise CalibrationError(
            f"calibration {calibration_id!r}: {rec_path} is not a valid calibration record: "
            f"{exc.error_count()} problem(s), first: {exc.errors()[0]['msg']} at "
            f"{'.'.join(str(p) for p in exc.errors()[0]['loc'])}"
        ) from exc
    if record.format_version != FORMAT_VERSION:
        raise CalibrationError(
            f"calibration {calibration_id!r}: format_version {record.format_version} is not "
            f"the supported {FORMAT_VERSION}; run `station capture --calibrate` again"
        )
    if record.created.tzinfo is None:
        record = record.model_copy(update={"created": record.created.replace(tzinfo=UTC)})
    maps: dict[str, dict[str, npt.NDArray[np.float32]]] = {}
    wanted = [(c, k) for c, r in record.cameras.items() for k in ("dark", "flat")
              if getattr(r, k)]
    if wanted and with_maps:
        maps_path = where / MAPS_FILE
        try:
            with np.load(maps_path, allow_pickle=False) as npz:
                for cam, kind in wanted:
                    key = f"{cam}.{kind}"
                    if key not in npz.files:
                        raise CalibrationError(
                            f"calibration {calibration_id!r}: {maps_path} lacks the {kind} map "
                            f"of camera {cam!r} that {RECORD_FILE} announces"
                        )
                    arr = np.asarray(npz[key], dtype=np.float32)
                    rec = record.cameras[cam]
                    if rec.height is not None and rec.width is not None and \
                            arr.shape[:2] != (rec.height, rec.width):
                        raise CalibrationError(
                            f"calibration {calibration_id!r}: the {kind} map of {cam!r} is "
                            f"{arr.shape[1]}x{arr.shape[0]} px, the record says "
                            f"{rec.width}x{rec.height}"
                        )
                    maps.setdefault(cam, {})[kind] = arr
        except CalibrationError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise CalibrationError(
                f"calibration {calibration_id!r}: cannot read {maps_path}: {exc}"
            ) from exc
    return record, maps


def _expected_serials(
    cfg: StationConfig, serials: Mapping[str, str | None] | None
) -> dict[str, str]:
    out: dict[str, str] = {}
    for cam in cfg.cameras:
        if cam.backend == "genicam" and cam.genicam.serial_number:
            out[cam.name] = cam.genicam.serial_number
    for name, serial in (serials or {}).items():
        if serial:
            out[name] = serial
    return out


def _configured_pixel_format(cam: CameraConfig) -> str | None:
    """The pixel format the config asks of a camera, when it names one."""
    if cam.backend == "replay":
        return str(cam.replay.pixel_format)
    value = cam.genicam.features.get("PixelFormat")
    return value if isinstance(value, str) else None


def load_calibration(
    cfg: StationConfig,
    data_dir: Path,
    *,
    serials: Mapping[str, str | None] | None = None,
    now: datetime | None = None,
) -> LoadedCalibration:
    """Load the calibration in force for the daemon; never raises for what is on disk.

    ``serials``: camera name -> serial of the cameras as opened (``Camera.health().serial``);
    without it, only serials named in the config (``cameras[].genicam.serial_number``) are
    compared. Call again after opening the cameras to check them. ``now``: for tests.
    No calibration on disk gives ``calibration_id=None``, no warnings, ``usable``; ``mm_per_px``
    then comes from ``cameras[].mm_per_px``.
    """
    now = now or datetime.now(UTC)
    directory = calibration_dir(cfg, data_dir)
    fallback = {
        cam.name: CameraCalibration(mm_per_px=cam.mm_per_px) for cam in cfg.cameras
    }
    try:
        cal_id = current_id(directory)
    except OSError as exc:
        msg = f"calibration directory {directory}: cannot read it ({exc})"
        return LoadedCalibration(None, fallback, [], [msg], path=directory)
    if cal_id is None:
        return LoadedCalibration(None, fallback, path=directory)
    try:
        record, maps = read_calibration(directory, cal_id)
    except CalibrationError as exc:
        msg = f"{exc} (inspections are refused until this is fixed)"
        log.error("calibration.unreadable", calibration_id=cal_id, error=str(exc))
        return LoadedCalibration(cal_id, fallback, [], [msg], path=directory / cal_id)

    warnings: list[str] = []
    refusable: list[str] = []
    age_days = (now - record.created).total_seconds() / 86400.0
    max_age = cfg.calibration.max_age_days
    if age_days > max_age:
        refusable.append(
            f"calibration {cal_id} is {age_days:.1f} days old, older than "
            f"calibration.max_age_days={max_age:g}; run `station capture --calibrate`"
        )
    elif age_days < -1.0:
        refusable.append(
            f"calibration {cal_id} is dated {record.created.isoformat()}, "
            f"{-age_days:.1f} days in the future; check the clock"
        )
    expected = _expected_serials(cfg, serials)
    cameras: dict[str, CameraCalibration] = {}
    problems: list[str] = []
    for cam in cfg.cameras:
        rec = record.cameras.get(cam.name)
        if rec is None:
            warnings.append(
                f"calibration {cal_id} has no entry for camera {cam.name!r}: it runs without "
                "dark/flat correction and with cameras[].mm_per_px"
            )
            cameras[cam.name] = CameraCalibration(mm_per_px=cam.mm_per_px, calibration_id=cal_id)
            continue
        want = expected.get(cam.name)
        if want and rec.serial and want != rec.serial:
            refusable.append(
                f"calibration {cal_id} was made for camera {cam.name!r} with serial "
                f"{rec.serial!r}, but the camera now has serial {want!r}; recalibrate"
            )
        cam_maps = maps.get(cam.name, {})
        configured = _configured_pixel_format(cam)
        if cam_maps and rec.pixel_format and configured and configured != rec.pixel_format:
            problems.append(
                f"calibration {cal_id}: the dark/flat maps of camera {cam.name!r} were made in "
                f"pixel format {rec.pixel_format}, the config now asks for {configured}; "
                "the maps would be applied in the wrong units or layout: recalibrate"
            )
        cameras[cam.name] = CameraCalibration(
            dark=cam_maps.get("dark"),
            flat=cam_maps.get("flat"),
            mm_per_px=rec.mm_per_px if rec.mm_per_px is not None else cam.mm_per_px,
            calibration_id=cal_id,
        )
    if cfg.calibration.refuse_stale:
        problems.extend(f"{p} (calibration.refuse_stale is true)" for p in refusable)
    else:
        warnings.extend(refusable)
    for w in warnings:
        log.warning("calibration.warning", calibration_id=cal_id, warning=w)
    for p in problems:
        log.error("calibration.refused", calibration_id=cal_id, problem=p)
    return LoadedCalibration(
        calibration_id=cal_id,
        cameras=cameras,
        warnings=warnings,
        problems=problems,
        created=record.created,
        path=directory / cal_id,
        record=record,
    )
