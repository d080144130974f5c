"""The calibration steps: pure logic against the ``Camera`` and ``Luminaires`` protocols.

Each ``run_*`` function measures one thing on one camera and returns a :class:`StepResult`
(PASS / FAIL / SKIP, a message naming what was measured against which threshold, the numbers,
and for dark/flat the correction maps). They print nothing: ``station capture --calibrate``
does the talking. Grey levels are fractions of the pixel format's full scale; the focus score
is on an 8-bit scale whatever the bit depth, so one threshold fits every camera.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
import structlog

from config.calibration import CalibrationConfig, StepName
from config.errors import CameraError, CameraFeatureError, LightError
from config.lights import LightsConfig
from drivers.cameras.base import Camera
from drivers.frame import Frame
from drivers.lights.base import Luminaires

log = structlog.get_logger(__name__)

Status = Literal["PASS", "FAIL", "SKIP"]
Measured = dict[str, float | int | str | bool | None]
Array = npt.NDArray[np.float32]
#: Incomplete frames tolerated in a row before a grab counts as failed.
GRAB_RETRIES = 3
#: Width the flat is reduced to before its uniformity is measured (noise and pixel
#: non-uniformity are not illumination) [px].
UNIFORMITY_WIDTH = 64
#: Exposure settings whose brightness-per-µs slopes are averaged by the exposure search.
SLOPE_WINDOW = 4
#: Longest side the chessboard is searched at (corners are refined at full resolution) [px].
CHESSBOARD_SEARCH_PX = 1600


@dataclass
class StepResult:
    """The outcome of one step on one camera."""

    step: StepName
    camera: str
    status: Status
    message: str
    measured: Measured = field(default_factory=dict)
    frames: int = 0
    #: "dark" / "flat" correction maps (float32, raw frame layout) of the dark and flat steps
    maps: dict[str, Array] = field(default_factory=dict)
    #: values the calibration keeps: exposure_us, gain_db, focus_score, uniformity, mm_per_px,
    #: camera_matrix, distortion
    values: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Not failed (PASS or SKIP)."""
        return self.status != "FAIL"


@dataclass
class Rig:
    """What a step needs: the camera, the luminaires (``None``: no lights), timing."""

    camera: Camera
    lights: Luminaires | None = None
    lights_cfg: LightsConfig | None = None
    timeout_s: float = 2.0
    #: sleep function (tests may pass a no-op)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _lit_at: float | None = field(default=None, init=False, repr=False)

    @property
    def settle_s(self) -> float:
        """Wait after switching lights [s]."""
        return (self.lights_cfg.settle_ms / 1000.0) if self.lights_cfg else 0.0

    def lights_on(self) -> None:
        """All configured channels on at their recipe intensities, then settle."""
        if self.lights is not None:
            self.lights.on()
            self._lit_at = self.clock()
            self.sleep(self.settle_s)

    def lights_off(self) -> None:
        """All channels off, then settle."""
        if self.lights is not None:
            self.lights.off()
            self._lit_at = None
            self.sleep(self.settle_s)

    def keep_lit(self) -> None:
        """Before the driver's guard (``lights.max_on_s``) forces the lights off mid-step,
        switch them off and on again (the guard counts from the first switch-on)."""
        if self._lit_at is None or self.lights_cfg is None:
            return
        if self.clock() - self._lit_at > 0.7 * self.lights_cfg.max_on_s:
            log.info("calibration.relight", camera=self.camera.name,
                     max_on_s=self.lights_cfg.max_on_s)
            self.lights_off()
            self.lights_on()


# ---------------------------------------------------------------------------- measurements


def full_scale(frame: Frame) -> float:
    """The largest sample value of the frame's pixel format (255, 1023, 4095, 65535)."""
    return float((1 << frame.bits) - 1)


def roi_slices(shape: tuple[int, ...], fraction: float) -> tuple[slice, slice]:
    """The centred region of interest covering ``fraction`` of height and width."""
    if not 0 < fraction <= 1:
        raise ValueError(f"roi fraction must be in (0, 1], got {fraction}")
    h, w = shape[0], shape[1]
    rh, rw = max(1, round(h * fraction)), max(1, round(w * fraction))
    y0, x0 = (h - rh) // 2, (w - rw) // 2
    return slice(y0, y0 + rh), slice(x0, x0 + rw)


def grey(frame: Frame) -> Array:
    """The frame as one float32 plane in fractions of full scale (colour: channel mean;
    Bayer and mono: the raw samples; an alpha channel is ignored)."""
    data = frame.data.astype(np.float32)
    if data.ndim == 3:
        data = data[:, :, :3].mean(axis=2)
    out: Array = data / full_scale(frame)
    return out


def mean_and_saturation(frame: Frame, fraction: float) -> tuple[float, float]:
    """Mean grey (fraction of full scale) and share of saturated samples, over the ROI."""
    ys, xs = roi_slices(frame.data.shape, fraction)
    roi = frame.data[ys, xs]
    if roi.ndim == 3:
        roi = roi[:, :, :3]
    top = full_scale(frame)
    return float(roi.mean()) / top, float(np.count_nonzero(roi >= top)) / float(roi.size)


def focus_score(image: npt.NDArray[np.generic]) -> float:
    """Sharpness: variance of the Laplacian (3x3) of a grey image in 8-bit grey levels."""
    img = np.asarray(image, dtype=np.float32)
    lap = cv2.Laplacian(img, cv2.CV_32F, ksize=1)
    return float(lap.var())


def frame_focus_score(frame: Frame, fraction: float) -> float:
    """:func:`focus_score` of the frame's ROI, scaled to 8-bit grey levels.

    Bayer frames are scored on one colour plane (every second pixel of every second row),
    so the mosaic pattern does not count as detail.
    """
    g = grey(frame) * 255.0
    if frame.pixel_format.startswith("Bayer"):
        g = np.ascontiguousarray(g[1::2, 0::2])  # a green plane for RG/BG, the other for GB/GR
    ys, xs = roi_slices(g.shape, fraction)
    return focus_score(g[ys, xs])


def uniformity(flat: Array, fraction: float) -> tuple[float, float, float]:
    """(min/max, min, max) of the flat over the ROI after reduction to ~64 px wide
    (colour: channel mean)."""
    plane = _no_alpha(flat).mean(axis=2) if flat.ndim == 3 else flat
    h, w = plane.shape
    if w > UNIFORMITY_WIDTH:
        size = (UNIFORMITY_WIDTH, max(1, round(h * UNIFORMITY_WIDTH / w)))
        plane = cv2.resize(plane.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    ys, xs = roi_slices(plane.shape, fraction)
    roi = plane[ys, xs]
    lo, hi = float(roi.min()), float(roi.max())
    return (lo / hi if hi > 0 else 0.0), lo, hi


def flat_field_correct(
    raw: npt.NDArray[np.generic], dark: Array | None, flat: Array | None, eps: float = 1e-3
) -> Array:
    """The contract of ``pipeline.types.CameraCalibration``: ``(raw - dark) / max(flat, eps)``
    (float32). A reference for tests; the pipeline has its own on the device."""
    out: Array = np.asarray(raw, dtype=np.float32)
    if dark is not None:
        out = np.asarray(out - dark, dtype=np.float32)
    if flat is not None:
        out = np.asarray(out / np.maximum(flat, eps), dtype=np.float32)
    return out


def grab(rig: Rig) -> Frame:
    """Trigger and grab one complete frame; incomplete ones are retried a few times."""
    for attempt in range(1, GRAB_RETRIES + 1):
        rig.keep_lit()
        rig.camera.trigger()
        frame = rig.camera.grab(rig.timeout_s)
        if frame.complete:
            return frame
        log.warning("calibration.incomplete_frame", camera=rig.camera.name, attempt=attempt)
    raise CameraError(
        f"camera {rig.camera.name}: {GRAB_RETRIES} incomplete frames in a row; check the "
        "link (packet size, bandwidth) before calibrating"
    )


def average_frames(rig: Rig, count: int) -> tuple[Array, Frame]:
    """Mean of ``count`` frames in raw sample units (float32, frame layout) and the last frame.

    ``CameraError`` if the frame size changes between frames (a map needs one size).
    """
    acc: npt.NDArray[np.float64] | None = None
    last: Frame | None = None
    for _ in range(count):
        frame = grab(rig)
        if acc is None:
            acc = frame.data.astype(np.float64)
        elif frame.data.shape != acc.shape:
            raise CameraError(
                f"camera {rig.camera.name}: frame size changed from "
                f"{acc.shape[1]}x{acc.shape[0]} to {frame.width}x{frame.height} px while "
                "averaging; correction maps need a fixed frame size"
            )
        else:
            acc += frame.data
        last = frame
    assert acc is not None and last is not None
    return (acc / count).astype(np.float32), last


def _no_alpha(array: Array) -> Array:
    """The colour channels of an RGBa array (others unchanged)."""
    return array[:, :, :3] if array.ndim == 3 and array.shape[2] == 4 else array


def _fail_on_camera_error(step: StepName, camera: str, exc: Exception) -> StepResult:
    return StepResult(step, camera, "FAIL", f"{step}: camera or lights failed: {exc}")


# ------------------------------------------------------------------------------ exposure


def _feature_float(camera: Camera, node: str) -> float | None:
    """A numeric feature, or ``None`` when the camera has no such node."""
    try:
        value = camera.get_feature(node)
    except CameraFeatureError:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def run_exposure(rig: Rig, cal: CalibrationConfig) -> StepResult:
    """Adjust ExposureTime (then Gain, only if exposure alone cannot) until the mean grey in
    the ROI is within ``exposure_tolerance`` of ``exposure_target`` with at most
    ``exposure_max_saturated`` of the pixels saturated; bounded by ``exposure_max_iterations``.

    A camera without an ExposureTime node is a SKIP that says so.
    """
    cam = rig.camera
    exposure = _feature_float(cam, "ExposureTime")
    if exposure is None:
        return StepResult(
            "exposure", cam.name, "SKIP",
            f"exposure: camera {cam.name} has no ExposureTime feature (GenICam node missing "
            "or not numeric), so exposure cannot be adjusted; the camera's own setting stays",
        )
    gain = _feature_float(cam, "Gain")
    gain_start = gain
    target, tol = cal.exposure_target, cal.exposure_tolerance
    frames = 0
    history: list[str] = []
    slopes: list[float] = []
    mean = sat = 0.0
    last_measured: Measured = {}
    try:
        rig.lights_on()
        exposure = min(max(exposure, cal.exposure_min_us), cal.exposure_max_us)
        for iteration in range(1, cal.exposure_max_iterations + 1):
            cam.set_feature("ExposureTime", exposure)
            means, sats = [], []
            for _ in range(cal.exposure_frames):
                m, s = mean_and_saturation(grab(rig), cal.roi_fraction)
                means.append(m)
                sats.append(s)
                frames += 1
            mean, sat = float(np.mean(means)), float(np.mean(sats))
            gain_txt = f", gain {gain:.2f} dB" if gain is not None else ""
            history.append(f"{exposure:.0f} µs{gain_txt}: mean {mean:.3f}, saturated {sat:.2%}")
            log.debug("calibration.exposure", camera=cam.name, iteration=iteration,
                      exposure_us=exposure, gain_db=gain, mean=mean, saturated=sat)
            measured: Measured = {
                "exposure_us": round(exposure, 1), "gain_db": gain, "mean": round(mean, 4),
                "saturated": round(sat, 5), "iterations": iteration, "frames": frames,
            }
            if abs(mean - target) <= tol and sat <= cal.exposure_max_saturated:
                return StepResult(
                    "exposure", cam.name, "PASS",
                    f"exposure {exposure:.0f} µs{gain_txt}: mean grey {mean:.3f} (target "
                    f"{target:.3f} ± {tol:.3f}), saturated {sat:.2%} (max "
                    f"{cal.exposure_max_saturated:.2%}), {iteration} setting(s), {frames} "
                    "frame(s)",
                    measured, frames,
                    values={"exposure_us": exposure, "gain_db": gain},
                )
            if sat > cal.exposure_max_saturated and mean < target - tol:
                return StepResult(
                    "exposure", cam.name, "FAIL",
                    f"exposure: {sat:.2%} of the pixels saturate (calibration."
                    f"exposure_max_saturated={cal.exposure_max_saturated:.2%}) while the mean "
                    f"grey is only {mean:.3f} (target {target:.3f}) at {exposure:.0f} µs: the "
                    "scene has highlights (specular reflections); diffuse the light, or raise "
                    "exposure_max_saturated / lower exposure_target",
                    measured, frames, values={"exposure_us": exposure, "gain_db": gain},
                )
            gain_factor = 10 ** ((gain or 0.0) / 20)
            if sat > cal.exposure_max_saturated:
                factor = min(target / mean if mean > 0 else 0.5, 0.7)
            elif mean <= 1e-4:
                factor = 8.0
            else:
                # Brightness is linear in exposure x gain: estimate the slope from the last
                # few settings, so a scene that changes between frames does not make the
                # search bounce between two settings.
                slopes.append(mean / (exposure * gain_factor))
                slope = float(np.mean(slopes[-SLOPE_WINDOW:]))
                factor = target / (slope * exposure * gain_factor)
            factor = min(max(factor, 1 / 8), 8.0)
            wanted = exposure * factor
            last_measured = measured
            if factor < 1 and gain is not None and gain_start is not None and gain > gain_start:
                # undo gain we added before shortening the exposure
                new_gain = max(gain_start, gain + 20 * math.log10(factor))
                cam.set_feature("Gain", new_gain)
                gain = new_gain
                continue
            if wanted > cal.exposure_max_us:
                need_db = 20 * math.log10(wanted / cal.exposure_max_us)
                if gain is not None and gain < cal.gain_max_db:
                    new_gain = min(cal.gain_max_db, gain + need_db)
                    cam.set_feature("Gain", new_gain)
                    gain = new_gain
                    exposure = cal.exposure_max_us
                    continue
                if exposure >= cal.exposure_max_us:
                    gain_note = (f"gain {gain:.1f} dB (calibration.gain_max_db="
                                 f"{cal.gain_max_db:g})" if gain is not None
                                 else "the camera has no Gain feature")
                    return StepResult(
                        "exposure", cam.name, "FAIL",
                        f"exposure: too dark: mean grey {mean:.3f} (target {target:.3f}) at the "
                        f"longest exposure {exposure:.0f} µs (calibration.exposure_max_us) and "
                        f"{gain_note}: more light, a wider aperture, or allow a longer exposure",
                        measured, frames, values={"exposure_us": exposure, "gain_db": gain},
                    )
            if wanted < cal.exposure_min_us and exposure <= cal.exposure_min_us:
                return StepResult(
                    "exposure", cam.name, "FAIL",
                    f"exposure: too bright: mean grey {mean:.3f}, saturated {sat:.2%} at the "
                    f"shortest exposure {exposure:.0f} µs (calibration.exposure_min_us): "
                    "less light (lower lights.channels[].intensity) or close the aperture",
                    measured, frames, values={"exposure_us": exposure, "gain_db": gain},
                )
            exposure = min(max(wanted, cal.exposure_min_us), cal.exposure_max_us)
    except CameraFeatureError as exc:
        return StepResult("exposure", cam.name, "FAIL", f"exposure: the camera refused: {exc}",
                          frames=frames)
    except (CameraError, LightError) as exc:
        return _fail_on_camera_error("exposure", cam.name, exc)
    finally:
        rig.lights_off()
    return StepResult(
        "exposure", cam.name, "FAIL",
        f"exposure: no setting within calibration.exposure_max_iterations="
        f"{cal.exposure_max_iterations} reached mean grey {target:.3f} ± {tol:.3f} with at most "
        f"{cal.exposure_max_saturated:.2%} saturated; last {history[-1] if history else '-'}; "
        "the scene changes between frames? raise exposure_frames or exposure_tolerance",
        last_measured, frames,
    )


# --------------------------------------------------------------------------------- focus


def run_focus(
    rig: Rig,
    cal: CalibrationConfig,
    *,
    frames: int | None = None,
    max_s: float | None = None,
    on_score: Callable[[float, float, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> StepResult:
    """Score sharpness frame after frame (variance of the Laplacian); the best counts.

    Unattended: ``frames`` frames (``focus_frames``). Interactive: until ``stop()`` is true
    or ``max_s`` passed (``focus_max_s``), calling ``on_score(score, best, frame_no)`` after
    every frame so the terminal can show it live while the technician turns the lens.
    """
    cam = rig.camera
    limit_frames = frames if frames is not None else (None if stop else cal.focus_frames)
    limit_s = max_s if max_s is not None else cal.focus_max_s
    best, last, n = -1.0, 0.0, 0
    try:
        rig.lights_on()
        start = clock()
        while True:
            last = frame_focus_score(grab(rig), cal.roi_fraction)
            n += 1
            best = max(best, last)
            if on_score is not None:
                on_score(last, best, n)
            if limit_frames is not None and n >= limit_frames:
                break
            if stop is not None and stop():
                break
            if clock() - start >= limit_s:
                break
    except (CameraError, LightError) as exc:
        return _fail_on_camera_error("focus", cam.name, exc)
    finally:
        rig.lights_off()
    measured: Measured = {"best": round(best, 2), "last": round(last, 2), "frames": n,
                          "threshold": cal.focus_threshold}
    passed = best >= cal.focus_threshold
    if passed:
        msg = (f"focus: best sharpness {best:.1f} ≥ threshold {cal.focus_threshold:g} "
               f"(last {last:.1f}, {n} frame(s))")
    else:
        msg = (f"focus: best sharpness {best:.1f} is below calibration.focus_threshold="
               f"{cal.focus_threshold:g} over {n} frame(s): turn the focus ring through the "
               "sharpest point, check the target has fine detail and enough light")
    return StepResult("focus", cam.name, "PASS" if passed else "FAIL", msg, measured, n,
                      values={"focus_score": best})


# ---------------------------------------------------------------------------- dark, flat


def run_dark(rig: Rig, cal: CalibrationConfig) -> StepResult:
    """Average ``dark_frames`` lights-off frames into the dark map; its mean must stay below
    ``dark_max_mean`` (otherwise light leaks in or the lights did not switch off)."""
    cam = rig.camera
    try:
        rig.lights_off()
        dark, last = average_frames(rig, cal.dark_frames)
    except (CameraError, LightError) as exc:
        return _fail_on_camera_error("dark", cam.name, exc)
    top = full_scale(last)
    if dark.ndim == 3 and dark.shape[2] == 4:
        dark[:, :, 3] = 0.0  # alpha is no light
    colour = _no_alpha(dark)
    ys, xs = roi_slices(dark.shape, cal.roi_fraction)
    mean = float(colour.mean()) / top
    measured: Measured = {
        "mean": round(mean, 5), "max": round(float(colour.max()) / top, 5),
        "roi_mean": round(float(colour[ys, xs].mean()) / top, 5),
        "width": last.width, "height": last.height, "frames": cal.dark_frames,
    }
    if mean > cal.dark_max_mean:
        return StepResult(
            "dark", cam.name, "FAIL",
            f"dark: mean of {cal.dark_frames} lights-off frames is {mean:.3f} of full scale, "
            f"above calibration.dark_max_mean={cal.dark_max_mean:g}: light reaches the sensor "
            "with the lights off (booth open? lights not switching off? lens uncapped in a "
            "lit room?)",
            measured, cal.dark_frames,
        )
    return StepResult(
        "dark", cam.name, "PASS",
        f"dark: {cal.dark_frames} frame(s) averaged, mean {mean:.4f} of full scale (max "
        f"{cal.dark_max_mean:g}), {last.width}x{last.height} px",
        measured, cal.dark_frames, maps={"dark": dark},
    )


def run_flat(rig: Rig, cal: CalibrationConfig, dark: Array | None) -> StepResult:
    """Average ``flat_frames`` frames of a uniform target with lights on; the flat map is
    ``(mean - dark) / its ROI mean`` (the contract of ``pipeline.types.CameraCalibration``);
    illumination uniformity (min/max over the ROI, smoothed) must reach
    ``flat_min_uniformity``."""
    cam = rig.camera
    try:
        rig.lights_on()
        mean_img, last = average_frames(rig, cal.flat_frames)
    except (CameraError, LightError) as exc:
        return _fail_on_camera_error("flat", cam.name, exc)
    finally:
        rig.lights_off()
    top = full_scale(last)
    notes = []
    if dark is not None and dark.shape != mean_img.shape:
        notes.append(f"the dark map ({dark.shape[1]}x{dark.shape[0]}) does not fit the frame "
                     f"({last.width}x{last.height}) and was not subtracted")
        dark = None
    elif dark is None:
        notes.append("no dark map: the flat is not dark-corrected")
    signal = mean_img - dark if dark is not None else mean_img
    ys, xs = roi_slices(signal.shape, cal.roi_fraction)
    roi_mean = float(_no_alpha(signal)[ys, xs].mean())
    raw_roi = _no_alpha(mean_img)[ys, xs]
    sat = float(np.count_nonzero(raw_roi >= top * 0.999)) / float(raw_roi.size)
    measured: Measured = {"roi_mean": round(roi_mean / top, 5), "saturated": round(sat, 5),
                          "frames": cal.flat_frames, "width": last.width,
                          "height": last.height}
    if roi_mean / top < cal.flat_min_mean:
        return StepResult(
            "flat", cam.name, "FAIL",
            f"flat: the target is too dark: ROI mean {roi_mean / top:.3f} of full scale after "
            f"dark subtraction, below calibration.flat_min_mean={cal.flat_min_mean:g}: lights "
            "on? target in place? run the exposure step first",
            measured, cal.flat_frames,
        )
    if sat > cal.exposure_max_saturated:
        return StepResult(
            "flat", cam.name, "FAIL",
            f"flat: {sat:.2%} of the ROI saturates (calibration.exposure_max_saturated="
            f"{cal.exposure_max_saturated:.2%}): a saturated flat cannot correct anything; "
            "run the exposure step on the flat target first",
            measured, cal.flat_frames,
        )
    flat = (signal / roi_mean).astype(np.float32)
    if flat.ndim == 3 and flat.shape[2] == 4:
        flat[:, :, 3] = 1.0  # alpha is not corrected
    ratio, lo, hi = uniformity(flat, cal.roi_fraction)
    measured.update({"uniformity": round(ratio, 4), "min": round(lo, 4), "max": round(hi, 4)})
    note = ("; " + "; ".join(notes)) if notes else ""
    if ratio < cal.flat_min_uniformity:
        return StepResult(
            "flat", cam.name, "FAIL",
            f"flat: illumination uniformity min/max {ratio:.3f} over the ROI is below "
            f"calibration.flat_min_uniformity={cal.flat_min_uniformity:g} (relative min "
            f"{lo:.3f}, max {hi:.3f}): aim or diffuse the lights, check the target is uniform"
            f"{note}",
            measured, cal.flat_frames, maps={"flat": flat}, values={"uniformity": ratio},
        )
    return StepResult(
        "flat", cam.name, "PASS",
        f"flat: {cal.flat_frames} frame(s) averaged, uniformity min/max {ratio:.3f} ≥ "
        f"{cal.flat_min_uniformity:g}, ROI mean {roi_mean / top:.3f} of full scale{note}",
        measured, cal.flat_frames, maps={"flat": flat}, values={"uniformity": ratio},
    )


# --------------------------------------------------------------------------------- scale


def find_chessboard(
    image8: npt.NDArray[np.uint8], cols: int, rows: int
) -> npt.NDArray[np.float32] | None:
    """Inner corners (rows, cols, 2) of a chessboard in an 8-bit grey image, sub-pixel, or
    ``None``. Searched on a reduced copy of large images, refined at full resolution."""
    h, w = image8.shape
    scale = min(1.0, CHESSBOARD_SEARCH_PX / max(h, w))
    small = image8 if scale == 1.0 else cv2.resize(
        image8, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    found, corners = cv2.findChessboardCornersSB(small, (cols, rows), None)
    if not found:
        flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
        found, corners = cv2.findChessboardCorners(small, (cols, rows), flags=flags)
        if not found:
            return None
    pts = np.asarray(corners, np.float32).reshape(-1, 1, 2) / scale
    grid = pts.reshape(rows, cols, 2)
    spacing = float(np.median(np.linalg.norm(np.diff(grid, axis=1), axis=2)))
    win = int(min(15, max(2, spacing / 4)))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 40, 0.01)
    refined = cv2.cornerSubPix(image8, pts.copy(), (win, win), (-1, -1), criteria)
    return np.asarray(refined, np.float32).reshape(rows, cols, 2)


def square_size_px(corners: npt.NDArray[np.float32]) -> tuple[float, float]:
    """Median square size along rows and along columns [px] of a (rows, cols, 2) corner grid."""
    along_rows = np.linalg.norm(np.diff(corners, axis=1), axis=2)
    along_cols = np.linalg.norm(np.diff(corners, axis=0), axis=2)
    return float(np.median(along_rows)), float(np.median(along_cols))


def run_scale(rig: Rig, cal: CalibrationConfig) -> StepResult:
    """Find the chessboard (``chessboard_cols`` x ``chessboard_rows`` inner corners, squares
    of ``chessboard_square_mm``) in up to ``scale_frames`` frames; mm per pixel from the median
    square size; optionally lens distortion (OpenCV ``calibrateCamera``)."""
    cam = rig.camera
    cols, rows = cal.chessboard_cols, cal.chessboard_rows
    views: list[npt.NDArray[np.float32]] = []
    size: tuple[int, int] = (0, 0)
    n = 0
    try:
        rig.lights_on()
        for _ in range(cal.scale_frames):
            frame = grab(rig)
            n += 1
            g = grey(frame)
            if frame.pixel_format.startswith("Bayer"):  # 2x2 mean: luminance, not the mosaic
                g = np.asarray(cv2.blur(g, (2, 2)), dtype=np.float32)
            image8 = np.clip(g * 255.0 + 0.5, 0, 255).astype(np.uint8)
            size = (frame.width, frame.height)
            corners = find_chessboard(image8, cols, rows)
            if corners is not None:
                views.append(corners)
                if not cal.scale_distortion:
                    break
    except (CameraError, LightError) as exc:
        return _fail_on_camera_error("scale", cam.name, exc)
    finally:
        rig.lights_off()
    if not views:
        return StepResult(
            "scale", cam.name, "FAIL",
            f"scale: no chessboard with {cols}x{rows} inner corners (calibration."
            f"chessboard_cols x chessboard_rows) found in {n} frame(s): put the target flat in "
            "the part plane, fully in view and evenly lit; count inner corners, not squares",
            {"frames": n, "views": 0}, n,
        )
    sizes = [square_size_px(v) for v in views]
    along_rows = float(np.median([s[0] for s in sizes]))
    along_cols = float(np.median([s[1] for s in sizes]))
    px = (along_rows + along_cols) / 2.0
    anisotropy = abs(along_rows - along_cols) / px
    mm_per_px = cal.chessboard_square_mm / px
    measured: Measured = {
        "square_px_rows": round(along_rows, 3), "square_px_cols": round(along_cols, 3),
        "mm_per_px": round(mm_per_px, 6), "anisotropy": round(anisotropy, 4),
        "views": len(views), "frames": n,
    }
    values: dict[str, object] = {"mm_per_px": mm_per_px}
    if cal.scale_distortion:
        obj = np.zeros((rows * cols, 3), np.float32)
        obj[:, :2] = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2) * cal.chessboard_square_mm
        flags = (cv2.CALIB_FIX_PRINCIPAL_POINT | cv2.CALIB_ZERO_TANGENT_DIST
                 | cv2.CALIB_FIX_K3 | cv2.CALIB_FIX_ASPECT_RATIO)
        k0 = np.array([[size[0], 0, size[0] / 2], [0, size[0], size[1] / 2], [0, 0, 1]],
                      np.float64)
        rms, k, dist, _, _ = cv2.calibrateCamera(
            [obj] * len(views), [v.reshape(-1, 1, 2) for v in views], size, k0, None,
            flags=flags | cv2.CALIB_USE_INTRINSIC_GUESS)
        values["camera_matrix"] = np.asarray(k).tolist()
        values["distortion"] = np.asarray(dist).ravel().tolist()
        measured["reprojection_px"] = round(float(rms), 4)
        measured["k1"] = round(float(np.asarray(dist).ravel()[0]), 6)
    if anisotropy > cal.scale_max_anisotropy:
        return StepResult(
            "scale", cam.name, "FAIL",
            f"scale: squares measure {along_rows:.2f} px along rows but {along_cols:.2f} px "
            f"along columns ({anisotropy:.1%} apart, above calibration.scale_max_anisotropy="
            f"{cal.scale_max_anisotropy:.1%}): the board is tilted; lay it flat in the part "
            "plane, square to the camera",
            measured, n, values=values,
        )
    return StepResult(
        "scale", cam.name, "PASS",
        f"scale: {mm_per_px:.5f} mm/px ({cal.chessboard_square_mm:g} mm squares measure "
        f"{px:.2f} px, rows/columns {anisotropy:.1%} apart), {len(views)} view(s)",
        measured, n, values=values,
    )


# -------------------------------------------------------------------------------- lights


def run_lights(rig: Rig, cal: CalibrationConfig) -> StepResult:
    """Each configured channel switched on alone (at its recipe intensity) must raise the
    mean grey over all-lights-off by ``lights_margin``; the step names channels that do not."""
    cam = rig.camera
    if rig.lights is None or rig.lights_cfg is None or not rig.lights_cfg.channels:
        return StepResult("lights", cam.name, "SKIP",
                          "lights: no luminaires configured (lights.backend: none or no "
                          "lights.channels)")
    lights = rig.lights
    measured: Measured = {}
    failed: list[str] = []
    n = 0
    try:
        rig.lights_off()
        baseline, _ = mean_and_saturation(grab(rig), cal.roi_fraction)
        n += 1
        measured["off"] = round(baseline, 4)
        for ch in rig.lights_cfg.channels:
            label = f"channel {ch.channel} ({ch.name})"
            try:
                lights.set_intensity(ch.channel, ch.intensity)
                lights.set_channel(ch.channel, True)
                rig.sleep(rig.settle_s)
                mean, _ = mean_and_saturation(grab(rig), cal.roi_fraction)
                n += 1
            except LightError as exc:
                failed.append(f"{label}: the controller refused: {exc}")
                measured[f"rise_{ch.name}"] = None
                continue
            finally:
                lights.set_channel(ch.channel, False)
                rig.sleep(rig.settle_s)
            rise = mean - baseline
            measured[f"rise_{ch.name}"] = round(rise, 4)
            if rise < cal.lights_margin:
                failed.append(
                    f"{label} at intensity {ch.intensity} raised the mean grey by only "
                    f"{rise:.3f} (from {baseline:.3f}; calibration.lights_margin="
                    f"{cal.lights_margin:g}): luminaire dead, unplugged, on another channel, "
                    "or not aimed at the field of view"
                )
    except (CameraError, LightError) as exc:
        return _fail_on_camera_error("lights", cam.name, exc)
    finally:
        rig.lights_off()
    rises = ", ".join(f"{k.removeprefix('rise_')} {v:+.3f}" if isinstance(v, float)
                      else f"{k.removeprefix('rise_')} -" for k, v in measured.items()
                      if k.startswith("rise_"))
    if failed:
        return StepResult("lights", cam.name, "FAIL", "lights: " + "; ".join(failed),
                          measured, n)
    return StepResult(
        "lights", cam.name, "PASS",
        f"lights: every channel raises the mean grey by ≥ {cal.lights_margin:g} over "
        f"{baseline:.3f} with all off ({rises})",
        measured, n,
    )
