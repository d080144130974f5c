"""``reload``: a new working set (model, rules, regions, pipeline, calibration) made off the
main thread, all or nothing.

:func:`prepare` reads the config file again (through the loader ``station run`` used, so the
same ``--set`` overrides apply), loads the model with its rules, regions and thresholds, runs
one warm-up inspection, loads the calibration in force, and reads the CURVE key folders. Any
failure raises :class:`ReloadError` saying which part and why; nothing of the running set has
changed then. The daemon swaps the whole :class:`Prepared` set in one step between cycles: a
cycle already running finishes on the set it started with.

What a reload applies: the sections ``model``, ``rules`` (regions included), ``pipeline`` and
``calibration``, and the calibration files: dark and flat maps, scale, and the calibrated
exposure and gain (set on the cameras by the cycle thread before its next cycle; a GenICam
camera that reconnects later reopens with the exposure of the start-up). Other sections
that changed in the file (cameras, lights, messaging, storage, ...) need a restart; the
reply lists them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from config import StationConfig
from config.errors import StationError
from station.cycle import CalibrationState, Inspects

log = structlog.get_logger(__name__)

#: The sections a reload applies; the others need a restart.
RELOADED = ("model", "rules", "pipeline", "calibration")


class ReloadError(StationError):
    """A reload was refused; the message says which part and why."""


@dataclass
class Prepared:
    """A complete new working set, ready to swap in."""

    cfg: StationConfig
    inspector: Inspects
    calibration: CalibrationState
    calibration_info: dict[str, Any]
    keys: Mapping[bytes, frozenset[str]] | None
    warm_up_ms: float
    restart_needed: list[str] = field(default_factory=list)
    #: camera -> {"ExposureTime": µs, "Gain": dB} of the calibration, applied by the cycle
    #: thread before its next cycle
    exposure: dict[str, dict[str, float]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What the reply reports."""
        info = self.inspector.model_info
        return {
            "model": {k: info.get(k) for k in ("model_id", "trained", "checkpoint", "device")},
            "thresholds": info.get("thresholds"),
            "rules": self.cfg.rules.model_dump(mode="json"),
            "calibration_id": self.calibration.calibration_id,
            "calibration_problems": list(self.calibration.refuse_reasons),
            "calibration_warnings": list(self.calibration_info.get("warnings", [])),
            "warm_up_ms": round(self.warm_up_ms, 1),
            "curve_keys": None if self.keys is None else len(self.keys),
            "exposure": self.exposure,
            "restart_needed": self.restart_needed,
        }


def changed_sections(old: StationConfig, new: StationConfig) -> list[str]:
    """Top-level sections that differ and that a reload does not apply."""
    out = []
    for name in type(old).model_fields:
        if name in RELOADED:
            continue
        if getattr(old, name) != getattr(new, name):
            out.append(name)
    return out


def merged_config(running: StationConfig, new: StationConfig) -> StationConfig:
    """The running config with the reloadable sections of ``new``."""
    merged = running.model_copy(update={name: getattr(new, name) for name in RELOADED})
    merged._base_dir = new.base_dir
    return merged


def warm_up_images(cfg: StationConfig, sizes: Mapping[str, tuple[int, int]]) -> list[Any]:
    """One black Mono8 frame per camera, of the size last seen (else one tile)."""
    from pipeline.types import InputImage

    tile = cfg.pipeline.tile_size
    return [
        InputImage(camera=c.name, pixels=np.zeros(sizes.get(c.name, (tile, tile)), np.uint8),
                   pixel_format="Mono8", bits=8)
        for c in cfg.cameras
    ]


def prepare(
    loader: Callable[[], StationConfig],
    running: StationConfig,
    running_calibration_id: str | None,
    data_dir: Path,
    serials: Mapping[str, str | None] | None,
    frame_sizes: Mapping[str, tuple[int, int]],
    key_loader: Callable[[], Mapping[bytes, frozenset[str]]] | None = None,
) -> Prepared:
    """Build the new set; ``ReloadError`` names what is wrong. Runs off the main thread."""
    from pipeline import Inspector
    from station.calibration.state import calibrated_exposure, load_calibration_state

    try:
        new = loader()
    except StationError as exc:
        raise ReloadError(f"config: {exc}") from exc
    cfg = merged_config(running, new)
    try:
        inspector = Inspector.from_config(cfg)
    except (StationError, OSError, ValueError, RuntimeError) as exc:
        raise ReloadError(f"model ({cfg.model.checkpoint}): {exc}") from exc
    t0 = time.perf_counter()
    try:
        images = warm_up_images(cfg, frame_sizes)
        mm = {c.name: c.mm_per_px for c in cfg.cameras if c.mm_per_px is not None}
        inspector.inspect(images, None, mm)  # the whole pipeline runs with the new set
        warmup = getattr(inspector, "warmup", None)  # CUDA: batch sizing, graphs, compile
        if warmup is not None:
            warmup(sorted(set(frame_sizes.values())))
    except Exception as exc:  # the new model cannot run: it must not take over
        raise ReloadError(f"model warm-up failed: {type(exc).__name__}: {exc}") from exc
    warm_up_ms = (time.perf_counter() - t0) * 1000
    try:
        calibration, info = load_calibration_state(cfg, data_dir, dict(serials or {}))
    except (StationError, OSError) as exc:
        raise ReloadError(f"calibration: {exc}") from exc
    if calibration.refuse_reasons and calibration.calibration_id != running_calibration_id:
        raise ReloadError(
            f"calibration {calibration.calibration_id}: "
            + "; ".join(calibration.refuse_reasons)
        )
    keys = None
    if key_loader is not None:
        try:
            keys = key_loader()
        except StationError as exc:
            raise ReloadError(f"CURVE keys: {exc}") from exc
    exposure = calibrated_exposure(cfg, data_dir)
    restart = changed_sections(running, new)
    log.info("reload prepared", model=inspector.model_info.get("model_id"),
             calibration=calibration.calibration_id, warm_up_ms=round(warm_up_ms, 1),
             restart_needed=restart)
    return Prepared(cfg, inspector, calibration, info, keys, warm_up_ms, restart, exposure)
