"""Assembling a daemon from a config: drivers, model, calibration, store, sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from config import StationConfig
from config.errors import DriverError
from station.cycle import CalibrationState
from station.daemon import Daemon
from station.health import Notifier

log = structlog.get_logger(__name__)


def load_calibration_state(
    cfg: StationConfig, data_dir: Path
) -> tuple[CalibrationState, dict[str, Any]]:
    """The booth calibration for the cycle, and what ``status`` reports about it."""
    from station.calibration import load_calibration

    loaded = load_calibration(cfg, data_dir)
    state = CalibrationState(
        calibration_id=loaded.calibration_id,
        cameras=dict(loaded.cameras),
        refuse_reasons=list(loaded.problems) if cfg.calibration.refuse_stale else [],
    )
    info: dict[str, Any] = {"warnings": list(loaded.warnings)}
    if not cfg.calibration.refuse_stale:
        info["warnings"] += [p for p in loaded.problems if p not in info["warnings"]]
    return state, info


def build_daemon(cfg: StationConfig, data_dir: Path, notifier: Notifier | None = None) -> Daemon:
    """Open everything the config names and return a daemon ready to ``start()``.

    The model must load (nothing works without it); lights and cameras that fail to open
    are reported and retried while the daemon serves ERROR verdicts.
    """
    from drivers.cameras import CameraRig, open_camera
    from drivers.lights import open_lights
    from pipeline import Inspector

    inspector = Inspector.from_config(cfg)
    log.info("model loaded", **{k: v for k, v in inspector.model_info.items()
                                 if k in ("model_id", "trained", "device", "encoder")})
    calibration, cal_info = load_calibration_state(cfg, data_dir)

    lights = open_lights(cfg.lights)
    daemon_ref: list[Daemon] = []

    def on_event(kind: str, data: dict[str, object]) -> None:
        if daemon_ref:
            daemon_ref[0].event(kind, dict(data))

    cameras = [open_camera(c, cfg.base_dir) for c in cfg.cameras]
    rig = CameraRig(cameras, on_event=on_event)
    daemon = Daemon(
        cfg, data_dir, inspector=inspector, rig=rig, lights=lights,
        calibration=calibration, calibration_info=cal_info, notifier=notifier,
    )
    daemon_ref.append(daemon)
    try:
        lights.open()
    except DriverError as exc:
        log.error("lights did not open; inspections are ERROR until they do", error=str(exc))
        daemon.event("lights_fault", {"reason": str(exc)})
    rig.open()
    return daemon
