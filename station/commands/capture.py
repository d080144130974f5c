"""``station capture``: set a booth up (``--calibrate``), collect frames, aim (``--preview``).

- ``station capture --calibrate [--camera NAME] [--steps exposure,focus,dark,flat,scale,lights]
  [--yes]``: the calibration steps per camera with the configured lights; each prints what it
  measured and PASS / FAIL / SKIP; a summary table at the end; the calibration is written
  (``<data dir>/calibration`` or ``calibration.path``) only when no step failed, and the exit
  code is 1 when one did. ``--yes`` runs unattended with the defaults (no terminal needed).
- ``station capture [--count N] [--out DIR] [--lights on|off]``: frames from every camera to
  lossless PNG (or TIFF) files with a JSON sidecar each, for building datasets.
- ``station capture --preview``: a downscaled live JPEG, rewritten in place, for aiming.

See docs/calibration.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import numpy.typing as npt
import structlog

from config import StationConfig
from config.calibration import STEP_ORDER, StepName
from config.cameras import CameraConfig
from config.errors import CalibrationError, CameraError, ConfigError, LightError
from station import __version__
from station.commands._common import (
    add_config_options,
    add_data_dir_option,
    config_from_args,
    data_dir,
    in_range,
)

if TYPE_CHECKING:
    from drivers.cameras.base import Camera
    from drivers.frame import Frame
    from drivers.lights.base import Luminaires
    from station.calibration.steps import Rig, StepResult
    from station.calibration.store import CalibrationRecord, CameraRecord

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
MAX_COUNT = 100_000
MAX_PREVIEW_S = 3600.0


# ----------------------------------------------------------------------------- arguments


def _steps(text: str) -> list[StepName]:
    """argparse type: a comma-separated list of step names."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in STEP_ORDER]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"--steps {text!r}: unknown step(s) {', '.join(bad) or '(none given)'}; valid "
            f"steps: {','.join(STEP_ORDER)}"
        )
    return [s for s in STEP_ORDER if s in names]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station capture``."""
    parser = sub.add_parser(
        "capture", help="calibrate the booth (--calibrate), collect frames, preview (--preview)",
        description="Without a mode: grab --count frames from every camera into --out as "
        "lossless images with a JSON sidecar each. --calibrate: run the calibration steps and "
        "write a calibration the daemon loads. --preview: a live downscaled JPEG for aiming.",
    )
    add_config_options(parser)
    add_data_dir_option(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--calibrate", action="store_true",
                      help="run the calibration steps and write a calibration")
    mode.add_argument("--preview", action="store_true",
                      help="rewrite a downscaled live JPEG (--out, default <data dir>/preview.jpg)"
                      " until --duration or Ctrl-C")
    parser.add_argument("--camera", action="append", metavar="NAME",
                        help="only this camera (repeatable or comma-separated; default: all)")
    parser.add_argument("--steps", type=_steps, metavar="LIST",
                        help=f"calibration steps, comma-separated, from {','.join(STEP_ORDER)} "
                        "(default: calibration.steps of the config); they run in that order")
    parser.add_argument("--yes", "-y", action="store_true",
                        help="unattended: no prompts, defaults everywhere (no terminal needed)")
    parser.add_argument("--count", "-n", type=in_range(int, 1, MAX_COUNT), default=1, metavar="N",
                        help="frames per camera to capture (default 1)")
    parser.add_argument("--out", "-o", metavar="PATH",
                        help="capture: directory (default <data dir>/captures/<UTC time>); "
                        "preview: the JPEG file (default <data dir>/preview.jpg)")
    parser.add_argument("--lights", choices=["on", "off"], default="on",
                        help="lights during capture / preview (default on)")
    parser.add_argument("--format", choices=["png", "tiff"], default="png",
                        help="capture file format, both lossless (default png)")
    seconds = in_range(float, 0.0, MAX_PREVIEW_S, unit="s")
    parser.add_argument("--interval", type=seconds, default=None, metavar="S",
                        help="pause between captures (default 0) or preview updates (0.2) [s]")
    parser.add_argument("--duration", type=seconds, default=60.0, metavar="S",
                        help="preview: stop after this long (default 60, 0 = until Ctrl-C, "
                        f"at most {MAX_PREVIEW_S:g}) [s]")
    parser.add_argument("--width", type=in_range(int, 64, 8192, unit="px"), default=1024,
                        metavar="PX",
                        help="preview: width of the JPEG (default 1024) [px]")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to calibrate, preview or capture."""
    from station.logs import setup_logging

    cfg = config_from_args(args)
    setup_logging(cfg.logging.level, cfg.logging.format)
    if not args.calibrate and (args.steps or args.yes):
        raise ConfigError("--steps and --yes belong to --calibrate; add --calibrate")
    cameras = select_cameras(cfg, args.camera or [])
    ddir = data_dir(args, cfg)
    if args.calibrate:
        interactive = not args.yes
        if interactive and not sys.stdin.isatty():
            raise ConfigError(
                "--calibrate: standard input is not a terminal, so nobody can answer the "
                "prompts; pass --yes to run unattended with the defaults"
            )
        console = Console(sys.stdout, interactive=interactive)
        return calibrate(cfg, ddir, cameras, args.steps, console)
    if args.preview:
        path = Path(args.out).expanduser() if args.out else ddir / "preview.jpg"
        interval = 0.2 if args.interval is None else args.interval
        return preview(cfg, cameras, path, lights_on=args.lights == "on",
                       duration_s=args.duration, width=args.width, interval_s=interval)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out).expanduser() if args.out else ddir / "captures" / stamp
    return capture(cfg, ddir, cameras, out, count=args.count, lights_on=args.lights == "on",
                   fmt=args.format, interval_s=args.interval or 0.0)


def select_cameras(cfg: StationConfig, names: Sequence[str]) -> list[CameraConfig]:
    """The configured cameras named by ``--camera`` (all when none); ``ConfigError`` names an
    unknown one and the valid names."""
    wanted = [n.strip() for item in names for n in item.split(",") if n.strip()]
    if not wanted:
        return list(cfg.cameras)
    valid = [c.name for c in cfg.cameras]
    unknown = [n for n in wanted if n not in valid]
    if unknown:
        raise ConfigError(
            f"--camera {', '.join(unknown)}: no such camera in the config; it has: "
            f"{', '.join(valid)}"
        )
    return [c for c in cfg.cameras if c.name in wanted]


# ------------------------------------------------------------------------------ terminal


class Console:
    """What the calibration says and asks; unattended (``interactive=False``) never reads."""

    def __init__(self, out: TextIO, *, interactive: bool,
                 ask: Callable[[str], str] | None = None) -> None:
        self.out = out
        self.interactive = interactive
        self._ask = ask or input
        self._live = False

    def say(self, text: str = "") -> None:
        """One line (ends a live line first)."""
        if self._live:
            self.out.write("\n")
            self._live = False
        self.out.write(text + "\n")
        self.out.flush()

    def ask(self, prompt: str) -> str:
        """The technician's answer ('' when unattended)."""
        if not self.interactive:
            return ""
        self.say()
        try:
            return self._ask(prompt).strip().lower()
        except EOFError:  # Ctrl-D: the technician wants out
            return "q"

    def live(self, text: str) -> None:
        """A line rewritten in place on a terminal (plain lines otherwise)."""
        if self.out.isatty():
            self.out.write("\r" + text + "\x1b[K")
            self._live = True
            self.out.flush()
        else:
            self.say(text)

    def enter_pressed(self) -> bool:
        """True once the technician pressed Enter (non-blocking; False when unattended)."""
        if not self.interactive:
            return False
        try:
            ready, _, _ = select.select([sys.stdin], [], [], 0)
        except (OSError, ValueError):
            return False
        if ready:
            sys.stdin.readline()
            return True
        return False


@contextmanager
def _sigint_flag() -> Iterator[list[bool]]:
    """While inside, Ctrl-C sets ``flag[0]`` instead of raising (ends a live step, not the run)."""
    flag = [False]

    def handler(signum: int, frame: FrameType | None) -> None:
        flag[0] = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------- calibration


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
    from station.calibration import steps as st

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

        with _sigint_flag() as flag:
            return st.run_focus(rig, cal, frames=None, max_s=cal.focus_max_s, on_score=show,
                                stop=lambda: flag[0] or console.enter_pressed())
    if step == "dark":
        return st.run_dark(rig, cal)
    if step == "flat":
        return st.run_flat(rig, cal, dark)
    if step == "scale":
        return st.run_scale(rig, cal)
    return st.run_lights(rig, cal)


def _reason(message: str, limit: int = 48) -> str:
    """A message without its "step: " prefix, cut to ``limit`` characters."""
    reason = message.split(": ", 1)[-1]
    return reason if len(reason) <= limit else reason[:limit - 1] + "…"


def short(result: StepResult) -> str:
    """The one number worth a summary cell (else the reason, shortened)."""
    m = result.measured
    if result.status == "SKIP":
        return _reason(result.message)
    if result.step == "exposure" and "exposure_us" in m:
        gain = m.get("gain_db")
        g = f", {gain:.1f} dB" if isinstance(gain, float) and gain else ""
        return f"{m['exposure_us']:.0f} µs{g}, mean {m.get('mean', 0):.3f}"
    if result.step == "focus" and "best" in m:
        return f"best {m['best']:.1f} (min {m.get('threshold')})"
    if result.step == "dark" and "mean" in m:
        return f"mean {m['mean']:.4f}"
    if result.step == "flat" and "uniformity" in m:
        return f"uniformity {m['uniformity']:.3f}"
    if result.step == "scale" and "mm_per_px" in m:
        return f"{m['mm_per_px']:.5f} mm/px"
    if result.step == "lights":
        rises = [f"{k[5:]} {v:+.3f}" for k, v in m.items()
                 if k.startswith("rise_") and isinstance(v, float)]
        if rises:
            return ", ".join(rises)
    return _reason(result.message)


def summary_table(results: Sequence[StepResult]) -> str:
    """A plain-text table: camera, step, result, the key number."""
    rows = [("camera", "step", "result", "measured")]
    rows += [(r.camera, r.step, r.status, short(r)) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True))
                     + "  " + row[3])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 8)
    return "\n".join(lines)


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
    from station.calibration.store import current_id, read_calibration

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
    from station.calibration.store import CameraRecord, StepRecord

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
    from drivers.cameras import open_camera
    from drivers.lights import open_lights
    from station.calibration import steps as st
    from station.calibration.store import (
        CalibrationRecord,
        calibration_dir,
        new_calibration_id,
        save_calibration,
    )

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
    console.say(f"\ncalibration {cal_id} written to {path}; `station run` loads it "
                "(a running daemon on `reload` or restart)")
    if hints:
        console.say("the daemon opens cameras from the config: to keep the exposure found, set "
                    + "; ".join(hints))
    return EXIT_OK


# ------------------------------------------------------------------------------ capture


def to_display8(frame: Frame) -> npt.NDArray[np.uint8]:
    """8-bit BGR or grey for display: deep formats scaled down, Bayer shown as 2x2 means."""
    import cv2

    top = float((1 << frame.bits) - 1)
    img = np.asarray(frame.data, dtype=np.float32) * np.float32(255.0 / top)
    if frame.pixel_format.startswith("Bayer"):
        img = np.asarray(cv2.blur(img, (2, 2)), dtype=np.float32)
    out: npt.NDArray[np.uint8] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if out.ndim == 3:
        out = out[:, :, :3]
        if frame.pixel_format in ("RGB8", "RGBa8"):
            out = np.ascontiguousarray(out[:, :, ::-1])
    return out


def _lossless(frame: Frame) -> npt.NDArray[np.uint8] | npt.NDArray[np.uint16]:
    """Pixels as written to PNG/TIFF: raw samples (Bayer mosaic kept), colour in BGR order."""
    data = frame.data
    if data.ndim == 3 and frame.pixel_format in ("RGB8", "RGBa8"):
        order = [2, 1, 0] if frame.pixel_format == "RGB8" else [2, 1, 0, 3]
        return np.ascontiguousarray(data[:, :, order], dtype=np.uint8)
    return data


def frame_metadata(frame: Frame, cfg: StationConfig, calibration_id: str | None,
                   lights_on: bool, file: str) -> dict[str, Any]:
    """The JSON sidecar of one captured frame."""
    return {
        "file": file,
        "camera": frame.camera,
        "frame_id": frame.frame_id,
        "host_timestamp_ns": frame.host_timestamp_ns,
        "host_time": datetime.fromtimestamp(frame.host_timestamp_ns / 1e9, UTC).isoformat(),
        "device_timestamp_ns": frame.device_timestamp_ns,
        "pixel_format": frame.pixel_format,
        "bits": frame.bits,
        "width": frame.width,
        "height": frame.height,
        "exposure_us": frame.exposure_us,
        "gain_db": frame.gain_db,
        "complete": frame.complete,
        "source": frame.source,
        "extra": dict(frame.extra),
        "lights": "on" if lights_on else "off",
        "light_intensities": {c.name: c.intensity for c in cfg.lights.channels}
        if lights_on else {},
        "station": cfg.name,
        "calibration_id": calibration_id,
        "software": f"station {__version__}",
        "note": "pixels are the raw samples (Bayer: the mosaic); colour files are BGR as "
                "OpenCV writes them",
    }


def _open_rig(cfg: StationConfig, cameras: Sequence[CameraConfig]) -> Any:
    from drivers.cameras import CameraRig, open_camera

    rig = CameraRig([open_camera(c, cfg.base_dir) for c in cameras])
    rig.open()
    return rig


def capture(
    cfg: StationConfig, data_dir_path: Path, cameras: Sequence[CameraConfig], out: Path, *,
    count: int, lights_on: bool, fmt: str = "png", interval_s: float = 0.0,
) -> int:
    """Grab ``count`` frames from every camera into ``out`` (lossless + JSON sidecar)."""
    import cv2

    from drivers.lights import open_lights
    from station.calibration.store import load_calibration

    cal_id = load_calibration(cfg, data_dir_path).calibration_id
    out.mkdir(parents=True, exist_ok=True)
    lights = open_lights(cfg.lights) if lights_on and cfg.lights.backend != "none" else None
    rig = _open_rig(cfg, cameras)
    written = 0
    try:
        if lights is not None:
            lights.open()
        for i in range(count):
            if lights is not None:
                lights.on()
                time.sleep(cfg.lights.settle_ms / 1000.0)
            try:
                frames: list[Frame] = rig.acquire()
            finally:
                if lights is not None:
                    lights.off()
            for frame in frames:
                safe = re.sub(r"[^A-Za-z0-9_.-]", "_", frame.camera)
                stem = f"{safe}_{datetime.now(UTC):%Y%m%dT%H%M%S}_{i:05d}"
                name = f"{stem}.{fmt}"
                if not cv2.imwrite(str(out / name), _lossless(frame)):
                    raise CameraError(f"capture: OpenCV could not write {out / name}")
                meta = frame_metadata(frame, cfg, cal_id, lights is not None, name)
                (out / f"{stem}.json").write_text(json.dumps(meta, indent=2) + "\n",
                                                  encoding="utf-8")
                written += 1
            if interval_s and i + 1 < count:
                time.sleep(interval_s)
    finally:
        rig.close()
        if lights is not None:
            lights.close()
    print(f"captured {written} frame(s) from {len(cameras)} camera(s) into {out} "
          f"({fmt.upper()} + JSON sidecar each)")
    return EXIT_OK


def compose_preview(frames: Sequence[Frame], width: int) -> npt.NDArray[np.uint8]:
    """The frames side by side, labelled, scaled to ``width`` px in total (8-bit BGR)."""
    import cv2

    tile_w = max(16, width // max(1, len(frames)))
    tiles = []
    for frame in frames:
        img = to_display8(frame)
        if img.ndim == 2:
            img = np.asarray(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
        h = max(1, round(img.shape[0] * tile_w / img.shape[1]))
        tile = np.asarray(cv2.resize(img, (tile_w, h), interpolation=cv2.INTER_AREA),
                          dtype=np.uint8)
        cv2.putText(tile, frame.camera, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    height = max(t.shape[0] for t in tiles)
    padded = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    return np.ascontiguousarray(np.hstack(padded))


def preview(
    cfg: StationConfig, cameras: Sequence[CameraConfig], path: Path, *, lights_on: bool,
    duration_s: float, width: int, interval_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Rewrite ``path`` (JPEG) with the cameras' latest frames until ``duration_s`` (0: until
    Ctrl-C); the file is replaced atomically so a viewer never shows half an image."""
    import cv2

    from drivers.lights import open_lights

    path.parent.mkdir(parents=True, exist_ok=True)
    lights = open_lights(cfg.lights) if lights_on and cfg.lights.backend != "none" else None
    rig = _open_rig(cfg, cameras)
    updates = 0
    print(f"preview: writing {path} (open it in an image viewer that reloads); "
          f"{'until Ctrl-C' if duration_s == 0 else f'for {duration_s:g} s, Ctrl-C ends early'}")
    lit_at: float | None = None
    try:
        if lights is not None:
            lights.open()
        start = clock()
        with _sigint_flag() as stop:
            while not stop[0] and (duration_s == 0 or clock() - start < duration_s):
                if lights is not None and (
                        lit_at is None or clock() - lit_at > 0.7 * cfg.lights.max_on_s):
                    lights.off()  # re-arm the luminaire guard, which counts from switch-on
                    lights.on()
                    lit_at = clock()
                    time.sleep(cfg.lights.settle_ms / 1000.0)
                frames = rig.acquire()
                ok, buf = cv2.imencode(".jpg", compose_preview(frames, width),
                                       [cv2.IMWRITE_JPEG_QUALITY, 85])
                if not ok:
                    raise CameraError("preview: OpenCV could not encode the JPEG")
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_bytes(buf.tobytes())
                os.replace(tmp, path)
                updates += 1
                if interval_s:
                    time.sleep(interval_s)
    finally:
        rig.close()
        if lights is not None:
            lights.close()
        with suppress(OSError):
            path.with_name(f".{path.name}.tmp").unlink(missing_ok=True)
    print(f"preview: {updates} update(s) of {path}")
    return EXIT_OK
