"""Assembling a daemon from a config: drivers, model, calibration, store, sockets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog
import zmq

from config import StationConfig
from config.errors import DriverError, StationError
from station.calibration.state import calibrated_exposure, load_calibration_state
from station.daemon import Daemon
from station.health import Notifier

log = structlog.get_logger(__name__)


def with_exposure(cfg: StationConfig, exposure: dict[str, dict[str, float]]) -> StationConfig:
    """GenICam cameras get the calibrated values as features, so every (re)open applies them."""
    cams = []
    for cam in cfg.cameras:
        values = exposure.get(cam.name)
        if values and cam.backend == "genicam":
            features = {**cam.genicam.features, **values}
            cam = cam.model_copy(
                update={"genicam": cam.genicam.model_copy(update={"features": features})}
            )
        cams.append(cam)
    new = cfg.model_copy(update={"cameras": cams})
    new._base_dir = cfg.base_dir
    return new


def check_endpoints(cfg: StationConfig) -> None:
    """Bind and release both endpoints, so that a taken port is reported before the model
    loads (seconds) rather than after; ``Daemon.bind`` binds them for good."""
    m = cfg.messaging
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        for kind, endpoint, key in ((zmq.PUB, m.publish, "publish"),
                                    (zmq.ROUTER, m.command, "command")):
            sock = ctx.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as exc:
                raise StationError(
                    f"messaging.{key} = {endpoint!r}: cannot bind ({exc}); is another station "
                    f"running? Choose a free endpoint with --set messaging.{key}="
                    "tcp://127.0.0.1:PORT"
                ) from exc
            finally:
                sock.close(0)
    finally:
        ctx.term()


def build_daemon(
    cfg: StationConfig, data_dir: Path, notifier: Notifier | None = None,
    config_loader: Callable[[], StationConfig] | None = None,
) -> Daemon:
    """Open everything the config names and return a daemon ready to ``start()``.

    ``config_loader`` reads the config again (``reload``); without it ``reload`` is refused.

    Cheap checks come first (the files the config names, the data directory, the
    endpoints), then the model, which must
    load (nothing works without it); lights and cameras that fail to open are reported and
    retried while the daemon serves ERROR verdicts.
    """
    from drivers.cameras import CameraRig, open_camera
    from drivers.lights import open_lights
    from pipeline import Inspector
    from station.preflight import require_paths
    from station.store import prepare_data_dir

    require_paths(cfg)
    if cfg.mqtt.enabled:
        from station.plant import require_mqtt

        require_mqtt(cfg)
    prepare_data_dir(data_dir)
    log.info("data directory", path=str(data_dir))
    check_endpoints(cfg)
    inspector = Inspector.from_config(cfg)
    log.info("model loaded", **{k: v for k, v in inspector.model_info.items()
                                 if k in ("model_id", "trained", "device", "encoder")})
    daemon_ref: list[Daemon] = []
    early: list[tuple[str, dict[str, object]]] = []  # events before the daemon exists

    def on_event(kind: str, data: dict[str, object]) -> None:
        if daemon_ref:
            daemon_ref[0].event(kind, dict(data))
        else:
            early.append((kind, dict(data)))

    lights = open_lights(cfg.lights, on_event=on_event)

    exposure = calibrated_exposure(cfg, data_dir)
    cameras = [open_camera(c, cfg.base_dir) for c in with_exposure(cfg, exposure).cameras]
    rig = CameraRig(cameras, on_event=on_event)
    rig.open()
    for cam in cameras:
        if cfg.camera(cam.name).backend == "genicam":
            continue  # applied as features on every (re)open, above
        for node, value in exposure.get(cam.name, {}).items():
            try:
                cam.set_feature(node, value)
                log.info("calibrated feature applied", camera=cam.name, node=node, value=value)
            except DriverError as exc:
                log.warning("calibrated feature not applied", camera=cam.name, node=node,
                            error=str(exc))
    sizes = set()
    for cam in cameras:  # warm the pipeline up for the frames it will see (CUDA only)
        try:
            sizes.add((int(cam.get_feature("Height")), int(cam.get_feature("Width"))))
        except (DriverError, TypeError, ValueError) as exc:
            log.debug("frame size unknown for warm-up", camera=cam.name, error=str(exc))
    try:
        inspector.warmup(sorted(sizes))
    except Exception as exc:  # the first inspections then pay for it; they still run
        log.error("pipeline warm-up failed", error=f"{type(exc).__name__}: {exc}")
    serials = {h.name: h.serial for h in rig.health()}
    calibration, cal_info = load_calibration_state(cfg, data_dir, serials)
    try:
        daemon = Daemon(
            cfg, data_dir, inspector=inspector, rig=rig, lights=lights,
            calibration=calibration, calibration_info=cal_info, notifier=notifier,
            config_loader=config_loader,
        )
    except BaseException:  # the store failed: close what was opened before raising
        lights.close()
        rig.close()
        raise
    daemon_ref.append(daemon)
    for kind, data in early:
        daemon.event(kind, data)
    try:
        lights.open()
    except DriverError as exc:
        log.error("lights did not open; inspections are ERROR until they do", error=str(exc))
        daemon.event("lights_fault", {"reason": str(exc), "during": "open"})
    return daemon
