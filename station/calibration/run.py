"""One calibration run (``station capture --calibrate``): the steps on every camera with the
configured lights, a result per step, a summary, and a new calibration written only when no
step failed.

What this run does not measure is carried over from the calibration in force when it was made
for the same camera as it is now (serial, pixel format). ``station.calibration.steps`` holds
the measurements, ``station.calibration.store`` the files, ``station.terminal`` the prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from config import StationConfig
from config.calibration import STEP_ORDER, StepName
from config.cameras import CameraConfig
from config.errors import CalibrationError, CameraError, LightError
from drivers.cameras import open_camera
from drivers.cameras.base import Camera
from drivers.lights import open_lights
from drivers.lights.base import Luminaires
from station import __version__
from station.calibration import steps as st
from station.calibration.steps import Rig, StepResult
from station.calibration.store import (
    CalibrationRecord,
    CameraRecord,
    StepRecord,
    calibration_dir,
    current_id,
    new_calibration_id,
    read_calibration,
    save_calibration,
)
from station.calibration.summary import summary_table
from station.terminal import Console, sigint_flag

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
#: Steps that need a live camera looking at the booth: a replay camera serving recorded files
#: does not respond to the luminaires and shows no calibration target.
LIVE_ONLY_STEPS: frozenset[str] = frozenset({"dark", "flat", "lights", "scale"})
#: What the technician is asked to do before each step (interactive mode).
PROMPTS: dict[str, str] = {
    "exposure": "put a typical part (or the grey target) in the inspection position",
    "focus": "put a part or target with fine detail in view; turn the focus ring through the "
             "sharpest point while watching the score; press Enter when done",
    "dark": "close the booth (or cap the lens): the dark frames are taken with the lights off",
    "flat": "put the uniform white/grey flat-field target in the part plane, filling the view",
    "scale": "lay the chessboard flat in the part plane, fully in view",
    "lights": "leave a part or the flat target in view: each channel is switched on alone",
}


def skip_reason(cam: CameraConfig, step: str, explicit: bool) -> str | None:
    """Why ``step`` is skipped on ``cam`` without being tried, or ``None``.

    Replay cameras serve recorded files: they do not respond to the luminaires and show no
    calibration target, so dark, flat, lights and scale have nothing to measure; they are
    skipped unless named in ``--steps`` (then they run, and fail with their own message).
    """
    if cam.backend == "replay" and step in LIVE_ONLY_STEPS and not explicit:
        return (f"{step}: camera {cam.name} is a replay camera serving recorded image files; "
                "they do not respond to the luminaires and show no calibration target, so "
                "there is nothing to measure (name the step in --steps to force it)")
    return None


def _run_step(
    step: StepName, rig: Rig, cfg: StationConfig, console: Console,
    dark: npt.NDArray[np.float32] | None,
) -> StepResult:
    cal = cfg.calibration
    if step == "exposure":
        return st.run_exposure(rig, cal)
    if step == "focus":
        if not console.interactive:
            return st.run_focus(rig, cal, frames=cal.focus_frames)
        threshold = cal.focus_threshold

        def show(score: float, best: float, n: int) -> None:
            bar = "#" * min(30, int(30 * score / (2 * threshold)))
            mark = "PASS" if best >= threshold else "    "
            console.live(f"  focus {rig.camera.name}: {score:10.1f}  best {best:10.1f}  "
                         f"threshold {threshold:g} {mark} |{bar:<30}| frame {n}")

        with sigint_flag() as flag:
            return st.run_focus(rig, cal, frames=None, max_s=cal.focus_max_s, on_score=show,
                                stop=lambda: flag[0] or console.enter_pressed())
    if step == "dark":
        return st.run_dark(rig, cal)
    if step == "flat":
        return st.run_flat(rig, cal, dark)
    if step == "scale":
        return st.run_scale(rig, cal)
    return st.run_lights(rig, cal)


def _feature(camera: Camera, node: str) -> float | str | None:
    try:
        value = camera.get_feature(node)
    except CameraError:
        return None
    if isinstance(value, bool):
        return None
    return value if isinstance(value, str) else float(value)


def _previous(directory: Path) -> tuple[CalibrationRecord | None,
                                        dict[str, dict[str, npt.NDArray[np.float32]]]]:
    """The calibration in force (to carry over what this run does not measure), if readable."""
    cal_id = current_id(directory)
    if cal_id is None:
        return None, {}
    try:
        return read_calibration(directory, cal_id)
    except CalibrationError as exc:
        log.warning("calibration.previous_unreadable", error=str(exc))
        return None, {}


def _camera_record(
    cal_id: str, camera: Camera, cam_cfg: CameraConfig, results: Sequence[StepResult],
    prev: CameraRecord | None, prev_maps: dict[str, npt.NDArray[np.float32]],
    maps_out: dict[str, npt.NDArray[np.float32]],
) -> CameraRecord:
    """The record of one camera: this run's measurements, the rest carried over from ``prev``
    (the previous calibration's entry, when :func:`_compatible` with this camera)."""
    health = camera.health()
    base: dict[str, Any] = prev.model_dump() if prev is not None else {}
    carried_maps = dict(prev_maps) if prev is not None else {}
    steps: dict[str, StepRecord] = {k: StepRecord.model_validate(v)
                                    for k, v in base.get("steps", {}).items()}
    fields: dict[str, Any] = {k: v for k, v in base.items() if k != "steps"}
    for r in results:
        steps[r.step] = StepRecord(status=r.status, message=r.message, measured=r.measured,
                                   calibration_id=cal_id)
        if r.status == "SKIP":
            continue
        for key in ("focus_score", "uniformity", "mm_per_px", "camera_matrix", "distortion"):
            if key in r.values and r.status == "PASS":
                fields[key] = r.values[key]
        for kind in ("dark", "flat"):
            if kind in r.maps and r.status == "PASS":
                carried_maps[kind] = r.maps[kind]
    shapes = {m.shape[:2] for m in carried_maps.values()}
    if len(shapes) > 1:  # a fresh dark with an old flat of another size: keep the fresh one
        fresh = {k for r in results for k in r.maps if r.status == "PASS"}
        carried_maps = {k: v for k, v in carried_maps.items() if k in fresh}
    maps_out.update(carried_maps)
    height = width = None
    if carried_maps:
        height, width = next(iter(carried_maps.values())).shape[:2]
    pixel_format = _feature(camera, "PixelFormat")
    exposure = _feature(camera, "ExposureTime")
    gain = _feature(camera, "Gain")
    fields.update(
        serial=health.serial, model=health.model, backend=cam_cfg.backend,
        pixel_format=pixel_format if isinstance(pixel_format, str) else None,
        width=width, height=height,
        exposure_us=exposure if isinstance(exposure, float) else None,
        gain_db=gain if isinstance(gain, float) else None,
        dark="dark" in carried_maps, flat="flat" in carried_maps,
    )
    return CameraRecord.model_validate({**fields, "steps": steps})


def _compatible(prev: CameraRecord | None, camera: Camera) -> CameraRecord | None:
    """``prev`` when it was made for this camera as it is now (same serial, same pixel
    format), so its maps and numbers may be carried over; else ``None``."""
    if prev is None:
        return None
    pixel_format = _feature(camera, "PixelFormat")
    if prev.serial != camera.health().serial:
        return None
    if prev.pixel_format and isinstance(pixel_format, str) and pixel_format != prev.pixel_format:
        return None
    return prev


def _keep_hint(index: int, cam_cfg: CameraConfig, result: StepResult) -> str | None:
    """The config keys that keep the exposure found (the daemon opens cameras from config)."""
    if result.step != "exposure" or result.status != "PASS":
        return None
    exp, gain = result.values.get("exposure_us"), result.values.get("gain_db")
    if cam_cfg.backend == "replay":
        keys = f"exposure_us: {exp:.0f}" if isinstance(exp, float) else ""
        if isinstance(gain, float):
            keys += f", gain_db: {gain:.2f}"
        return f"cameras[{index}].replay: {{{keys}}}"
    feats = f"ExposureTime: {exp:.0f}" if isinstance(exp, float) else ""
    if isinstance(gain, float):
        feats += f", Gain: {gain:.2f}"
    return f"cameras[{index}].genicam.features: {{{feats}}}"


def calibrate(
    cfg: StationConfig,
    data_dir_path: Path,
    cameras: Sequence[CameraConfig],
    steps: Sequence[StepName] | None,
    console: Console,
    *,
    open_camera_fn: Callable[[CameraConfig, Path], Camera] | None = None,
    lights: Luminaires | None = None,
) -> int:
    """Run the steps on every camera, print each result and a summary table, write the
    calibration if nothing failed; the exit code (0: written, 1: a step failed).

    ``open_camera_fn`` and ``lights`` let tests feed their own camera and luminaires.
    """
    explicit = steps is not None
    chosen: list[StepName] = list(steps) if steps is not None else [
        s for s in STEP_ORDER if s in cfg.calibration.steps]
    opener = open_camera_fn or open_camera
    directory = calibration_dir(cfg, data_dir_path)
    prev_record, prev_maps = _previous(directory)
    cal_id = new_calibration_id()
    console.say(f"station capture --calibrate: {len(cameras)} camera(s), steps "
                f"{','.join(chosen)}, {'interactive' if console.interactive else 'unattended'}")
    own_lights = lights is None and cfg.lights.backend != "none"
    if own_lights:
        lights = open_lights(cfg.lights)
        try:
            lights.open()
        except LightError as exc:
            lights.close()
            raise LightError(
                f"lights: cannot open the controller ({cfg.lights.backend}, port "
                f"{cfg.lights.port}): {exc}; calibration needs the lights (or set "
                "lights.backend: none)"
            ) from exc
    results: list[StepResult] = []
    records: dict[str, CameraRecord] = {}
    maps: dict[str, dict[str, npt.NDArray[np.float32]]] = {}
    hints: list[str] = []
    try:
        for cam_cfg in cameras:
            console.say(f"\n== camera {cam_cfg.name} ({cam_cfg.backend})")
            camera = opener(cam_cfg, cfg.base_dir)
            try:
                camera.open()
            except CameraError as exc:
                for step in chosen:
                    r = st.StepResult(step, cam_cfg.name, "FAIL",
                                      f"{step}: camera {cam_cfg.name} did not open: {exc}")
                    results.append(r)
                console.say(f"  [FAIL] camera {cam_cfg.name} did not open: {exc}")
                continue
            cam_results: list[StepResult] = []
            try:
                rig = st.Rig(camera, lights, cfg.lights if lights is not None else None,
                             timeout_s=cam_cfg.timeout_s)
                prev_cam = _compatible(
                    prev_record.cameras.get(cam_cfg.name) if prev_record else None, camera)
                prev_cam_maps = prev_maps.get(cam_cfg.name, {}) if prev_cam else {}
                dark = prev_cam_maps.get("dark")
                for step in chosen:
                    reason = skip_reason(cam_cfg, step, explicit)
                    if reason is None and console.interactive:
                        answer = console.ask(f"[{cam_cfg.name} {step}] {PROMPTS[step]}; "
                                             "Enter to go, s to skip, q to quit: ")
                        if answer.startswith("q"):
                            raise KeyboardInterrupt
                        if answer.startswith("s"):
                            reason = f"{step}: skipped at the prompt"
                    if reason is not None:
                        result = st.StepResult(step, cam_cfg.name, "SKIP", reason)
                    else:
                        result = _run_step(step, rig, cfg, console, dark)
                    if step == "dark" and "dark" in result.maps:
                        dark = result.maps["dark"]
                    cam_results.append(result)
                    console.say(f"  [{result.status}] {cam_cfg.name} {result.message}")
                    hint = _keep_hint(cfg.cameras.index(cam_cfg), cam_cfg, result)
                    if hint:
                        hints.append(hint)
                cam_maps: dict[str, npt.NDArray[np.float32]] = {}
                records[cam_cfg.name] = _camera_record(
                    cal_id, camera, cam_cfg, cam_results, prev_cam, prev_cam_maps, cam_maps)
                if cam_maps:
                    maps[cam_cfg.name] = cam_maps
            finally:
                results.extend(cam_results)
                camera.close()
    finally:
        if own_lights and lights is not None:
            lights.close()
        elif lights is not None:
            lights.off()

    console.say("\n== summary")
    console.say(summary_table(results))
    failed = [r for r in results if r.status == "FAIL"]
    in_force = prev_record.calibration_id if prev_record else "none"
    if failed:
        console.say(f"\n{len(failed)} step(s) failed; calibration NOT written (the calibration "
                    f"in force stays: {in_force}). Fix what the messages say and run again.")
        return EXIT_FAILURE
    if prev_record is not None:  # cameras not calibrated this time keep their entries
        for name, rec in prev_record.cameras.items():
            if name not in records and name in {c.name for c in cfg.cameras}:
                records[name] = rec
                if name in prev_maps:
                    maps[name] = prev_maps[name]
    record = CalibrationRecord(
        calibration_id=cal_id,
        created=datetime.now(UTC),
        station=cfg.name,
        software=f"station {__version__}",
        cameras=records,
        settings={
            "calibration": cfg.calibration.model_dump(mode="json"),
            "lights": cfg.lights.model_dump(mode="json"),
            "cameras": {c.name: c.model_dump(mode="json") for c in cameras},
            "steps": list(chosen),
            "previous": prev_record.calibration_id if prev_record else None,
        },
    )
    path = save_calibration(directory, record, maps, keep=cfg.calibration.keep)
    console.say(f"\ncalibration {cal_id} written to {path}; `station run` loads it at "
                "start, and a running station takes it with `station reload`")
    if hints:
        console.say("the daemon opens cameras from the config: to keep the exposure found, set "
                    + "; ".join(hints))
    return EXIT_OK
