"""Every calibration step against the replay camera fed by synthetic scenes of known truth,
and against viky (GenICam, no ExposureTime node) through harvesters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from config.calibration import CalibrationConfig
from config.cameras import CameraConfig
from config.lights import LightsConfig
from drivers.cameras import ReplayCamera, open_camera
from drivers.cameras.base import Camera
from drivers.lights import open_lights
from pipeline.preprocess import flat_field
from station import testing as t
from station.calibration import steps as st

SHAPE = (120, 160)


def _cal(**changes: Any) -> CalibrationConfig:
    return CalibrationConfig.model_validate(changes)


def _lights_cfg(*channels: tuple[int, str, int], backend: str = "none") -> LightsConfig:
    return LightsConfig.model_validate({
        "backend": backend, "settle_ms": 0,
        "channels": [{"channel": c, "name": n, "intensity": i} for c, n, i in channels],
    })


def _camera(scene: t.SceneFn, pixel_format: str = "Mono8", **kw: Any) -> ReplayCamera:
    cam = ReplayCamera.from_function("cam", scene, pixel_format, **kw)
    cam.open()
    return cam


def _rig(camera: Camera, lights: t.FakeLights | None = None,
         channels: tuple[tuple[int, str, int], ...] = ((1, "top", 255),)) -> st.Rig:
    return st.Rig(camera, lights, _lights_cfg(*channels) if lights else None, timeout_s=1.0,
                  sleep=lambda s: None)


# ------------------------------------------------------------------------------ exposure


@pytest.mark.parametrize("pixel_format", ["Mono8", "Mono12", "BayerRG8"])
def test_exposure_reaches_the_known_setting(pixel_format: str) -> None:
    """Mean 0.5 * t / 40000: the target 0.45 needs 36000 µs; the search lands within the
    tolerance of it and says how many frames it took."""
    cam = _camera(t.exposure_scene(SHAPE, 40_000.0), pixel_format)
    result = st.run_exposure(_rig(cam), _cal(exposure_frames=1))
    assert result.status == "PASS", result.message
    exposure = result.values["exposure_us"]
    assert isinstance(exposure, float)
    assert exposure == pytest.approx(36_000, rel=0.05 / 0.45)
    assert cam.get_feature("ExposureTime") == exposure
    assert result.frames == result.measured["frames"] and "frame(s)" in result.message


def test_exposure_uses_gain_only_when_exposure_is_not_enough() -> None:
    """A dim scene beyond exposure_max_us gets Gain; the exposure sits at its maximum.
    Truth: 0.45 = 0.5 * 20000 / 100000 * 10^(g/20), so g = 20 log10(4.5) = 13.06 dB."""
    cam = _camera(t.exposure_scene(SHAPE, 100_000.0), "Mono16")
    cal = _cal(exposure_max_us=20_000, gain_max_db=30, exposure_frames=1, exposure_tolerance=0.01)
    result = st.run_exposure(_rig(cam), cal)
    assert result.status == "PASS", result.message
    gain = result.values["gain_db"]
    assert result.values["exposure_us"] == 20_000 and isinstance(gain, float)
    assert gain == pytest.approx(13.06, abs=0.25)


def test_exposure_too_dark_names_the_limits() -> None:
    """Too dark at the longest exposure and no Gain node: FAIL naming exposure_max_us."""
    cam = t.HiddenFeatures(_camera(t.exposure_scene(SHAPE, 4_000_000.0)), ["Gain"])
    result = st.run_exposure(_rig(cam), _cal(exposure_max_us=20_000, exposure_frames=1))
    assert result.status == "FAIL"
    assert "too dark" in result.message and "exposure_max_us" in result.message
    assert "no Gain feature" in result.message


def test_exposure_too_bright_names_the_limit() -> None:
    """Saturated even at the shortest exposure: FAIL naming exposure_min_us."""
    cam = _camera(lambda i, f: np.ones(SHAPE, np.float32), exposure_us=20_000.0)
    result = st.run_exposure(_rig(cam), _cal(exposure_min_us=20_000, exposure_frames=1))
    assert result.status == "FAIL" and "exposure_min_us" in result.message


def test_exposure_highlights_fail_with_advice() -> None:
    """Highlights that saturate while the mean is still low: FAIL mentioning specular light."""
    base = np.full(SHAPE, 0.05, np.float32)
    base[:, :40] = 1.0  # a quarter of the view is a specular highlight

    cam = _camera(lambda i, f: base)
    result = st.run_exposure(_rig(cam), _cal(exposure_frames=1))
    assert result.status == "FAIL"
    assert "saturate" in result.message and "exposure_max_saturated" in result.message


def test_exposure_bounded_iterations() -> None:
    """One setting far from the target is all it may try: FAIL naming the bound."""
    cam = _camera(t.exposure_scene(SHAPE, 40_000.0))
    result = st.run_exposure(_rig(cam), _cal(exposure_max_iterations=1, exposure_frames=1))
    assert result.status == "FAIL"
    assert "exposure_max_iterations=1" in result.message and result.frames == 1


def test_exposure_skips_without_exposure_node() -> None:
    """A camera without ExposureTime: SKIP that says so, no exception."""
    cam = t.HiddenFeatures(_camera(t.exposure_scene(SHAPE)), ["ExposureTime"])
    result = st.run_exposure(_rig(cam), _cal())
    assert result.status == "SKIP" and "no ExposureTime feature" in result.message


def test_exposure_switches_the_lights() -> None:
    """Lights on while searching (the scene is dark without them), off afterwards."""
    lights = t.FakeLights({1: 255})
    cam = _camera(t.exposure_scene(SHAPE, 40_000.0, light=lights.output))
    result = st.run_exposure(_rig(cam, lights), _cal(exposure_frames=1))
    assert result.status == "PASS", result.message
    assert lights.calls[0] == "on" and lights.calls[-1] == "off" and not lights.lit


# --------------------------------------------------------------------------------- focus


def test_focus_sharp_passes_blurred_fails() -> None:
    """The sharp target passes the threshold, the blurred one fails with advice."""
    cal = _cal(focus_threshold=500.0, focus_frames=2)
    sharp = st.run_focus(_rig(_camera(t.focus_scene(SHAPE, 0.0))), cal)
    blurred = st.run_focus(_rig(_camera(t.focus_scene(SHAPE, 2.0))), cal)
    assert sharp.status == "PASS" and blurred.status == "FAIL"
    assert "focus_threshold=500" in blurred.message and blurred.frames == 2


def test_focus_live_scores_track_the_best() -> None:
    """Turning through focus: on_score sees every frame, the best is the known sharpest frame,
    and stop() ends an interactive session."""
    seen: list[tuple[float, float, int]] = []
    cam = _camera(t.focus_sweep(SHAPE, best_frame=4, sigma_per_frame=0.7))
    result = st.run_focus(_rig(cam), _cal(), on_score=lambda s, b, n: seen.append((s, b, n)),
                          stop=lambda: len(seen) >= 9)
    assert [n for _, _, n in seen] == list(range(1, 10))
    scores = [s for s, _, _ in seen]
    assert int(np.argmax(scores)) == 4
    assert result.measured["best"] == pytest.approx(max(scores), rel=1e-4)


def test_focus_is_bounded_in_time() -> None:
    """An interactive session that is never stopped ends at max_s."""
    ticks = iter(range(1000))
    result = st.run_focus(_rig(_camera(t.focus_scene(SHAPE))), _cal(), stop=lambda: False,
                          max_s=5, clock=lambda: float(next(ticks)))
    assert 1 <= result.frames <= 6


def test_focus_on_bayer_ignores_the_mosaic() -> None:
    """A flat grey Bayer frame scores ~0 although its mosaic alternates."""
    cam = _camera(lambda i, f: np.dstack([np.full(SHAPE, v, np.float32) for v in (.8, .4, .1)]),
                  "BayerRG8")
    assert st.run_focus(_rig(cam), _cal(focus_frames=1)).measured["best"] == pytest.approx(0)


# ---------------------------------------------------------------------------- dark, flat


def _vignette_rig(falloff: float = 0.3, **kw: Any) -> tuple[st.Rig, t.FakeLights]:
    lights = t.FakeLights({1: 255})
    scene = t.vignette_scene(SHAPE, falloff=falloff, light=lights.output, **kw)
    return _rig(_camera(scene, "Mono12"), lights), lights


def test_dark_and_flat_known_truth() -> None:
    """Dark = the offset; flat = the known vignette normalised to ROI mean 1; uniformity
    = 1 - falloff * f² (f = roi_fraction)."""
    rig, _ = _vignette_rig(0.3, dark_level=0.02, noise=0.002)
    cal = _cal(dark_frames=4, flat_frames=4, roi_fraction=0.8)
    dark = st.run_dark(rig, cal)
    assert dark.status == "PASS", dark.message
    dmap = dark.maps["dark"]
    assert dmap.dtype == np.float32 and dmap.shape == SHAPE
    assert float(dmap.mean()) / 4095 == pytest.approx(0.02, abs=0.001)
    flat = st.run_flat(rig, cal, dmap)
    assert flat.status == "PASS", flat.message
    fmap = flat.maps["flat"]
    ys, xs = st.roi_slices(SHAPE, 0.8)
    assert float(fmap[ys, xs].mean()) == pytest.approx(1.0, abs=1e-4)
    truth = t.vignette(SHAPE, 0.3)
    truth = truth / truth[ys, xs].mean()
    assert np.abs(fmap - truth).max() < 0.02
    assert flat.measured["uniformity"] == pytest.approx(1 - 0.3 * 0.8**2, abs=0.015)


def test_flat_corrected_frame_is_uniform_via_the_pipeline() -> None:
    """A vignetted frame corrected by pipeline.preprocess.flat_field with our maps is uniform
    within 1 % over the ROI (the flat-field contract of pipeline.types.CameraCalibration)."""
    rig, lights = _vignette_rig(0.35, dark_level=0.03)
    cal = _cal(dark_frames=2, flat_frames=2)
    dmap = st.run_dark(rig, cal).maps["dark"]
    fmap = st.run_flat(rig, cal, dmap).maps["flat"]
    lights.on()
    raw = st.grab(rig).data
    corrected = flat_field(torch.from_numpy(raw.astype(np.float32)), torch.from_numpy(dmap),
                           torch.from_numpy(fmap), 4095.0).numpy()
    ys, xs = st.roi_slices(SHAPE, cal.roi_fraction)
    roi = corrected[ys, xs]
    assert float(roi.min() / roi.max()) > 0.99
    before = raw[ys, xs].astype(np.float32) - dmap[ys, xs]
    assert float(before.min() / before.max()) < 0.8
    # the reference implementation in steps agrees with the pipeline's
    ours = st.flat_field_correct(raw, dmap, fmap, eps=0.05)
    assert np.allclose(np.clip(ours, 0, 4095), corrected, atol=1e-3)


def test_flat_uneven_light_fails() -> None:
    """Strong falloff: uniformity below flat_min_uniformity, named with the numbers."""
    rig, _ = _vignette_rig(0.7, dark_level=0.0)
    result = st.run_flat(rig, _cal(flat_frames=1, roi_fraction=1.0), None)
    assert result.status == "FAIL" and "flat_min_uniformity=0.6" in result.message
    assert "no dark map" in result.message
    assert result.measured["uniformity"] == pytest.approx(0.3, abs=0.03)


def test_flat_too_dark_and_saturated_fail() -> None:
    """No light on the target, or a saturating target: each FAILs with its own message."""
    dim = _rig(_camera(t.vignette_scene(SHAPE, level=0.01, dark_level=0.0)))
    assert "too dark" in st.run_flat(dim, _cal(flat_frames=1), None).message
    hot = _rig(_camera(t.vignette_scene(SHAPE, level=1.0, falloff=0.0, dark_level=0.0)))
    assert "saturates" in st.run_flat(hot, _cal(flat_frames=1), None).message


def test_dark_with_light_leak_fails() -> None:
    """Lights off but the scene stays bright (booth open): FAIL naming dark_max_mean."""
    rig = _rig(_camera(t.vignette_scene(SHAPE, level=0.5)), t.FakeLights({1: 255}))
    result = st.run_dark(rig, _cal(dark_frames=2))
    assert result.status == "FAIL" and "dark_max_mean" in result.message
    assert not result.maps


def test_dark_needs_a_fixed_frame_size() -> None:
    """Frames changing size while averaging (replay of files) FAIL with both sizes named."""
    cam = _camera(lambda i, f: np.zeros((20 + i, 30), np.float32))
    result = st.run_dark(_rig(cam), _cal(dark_frames=3))
    assert result.status == "FAIL" and "frame size changed" in result.message


# --------------------------------------------------------------------------------- scale


@pytest.mark.parametrize("square_px", [16, 23])
def test_scale_known_square_size(square_px: int) -> None:
    """mm per pixel = square_mm / square_px to 0.5 %."""
    cam = _camera(t.chessboard_scene(9, 6, square_px))
    result = st.run_scale(_rig(cam), _cal(chessboard_square_mm=4.0, scale_frames=1))
    assert result.status == "PASS", result.message
    assert result.values["mm_per_px"] == pytest.approx(4.0 / square_px, rel=0.005)


def test_scale_distortion_is_optional() -> None:
    """With scale_distortion the camera matrix and distortion come along (none here)."""
    cam = _camera(t.chessboard_scene(7, 5, 18))
    cal = _cal(chessboard_cols=7, chessboard_rows=5, scale_distortion=True, scale_frames=2)
    result = st.run_scale(_rig(cam), cal)
    assert result.status == "PASS", result.message
    dist = result.values["distortion"]
    assert isinstance(dist, list) and abs(dist[0]) < 0.05
    assert result.measured["views"] == 2 and float(result.measured["reprojection_px"] or 0) < 0.1


def test_scale_without_board_fails() -> None:
    """No chessboard in view: FAIL naming the pattern size and how to count corners."""
    result = st.run_scale(_rig(_camera(t.focus_scene(SHAPE))), _cal(scale_frames=2))
    assert result.status == "FAIL"
    assert "9x6 inner corners" in result.message and result.frames == 2


def test_scale_tilted_board_fails() -> None:
    """A board stretched 12 % along x (tilted): FAIL naming scale_max_anisotropy."""
    board = t.render_chessboard(9, 6, 20)
    stretched = np.asarray(cv2.resize(board, (int(board.shape[1] * 1.12), board.shape[0])),
                           dtype=np.float32)
    result = st.run_scale(_rig(_camera(lambda i, f: stretched)), _cal(scale_frames=1))
    assert result.status == "FAIL" and "scale_max_anisotropy" in result.message


# -------------------------------------------------------------------------------- lights


CHANNELS = ((1, "top", 200), (2, "side", 120))


def _lights_rig(lights: t.FakeLights) -> st.Rig:
    scene = t.lit_scene(t.focus_scene(SHAPE), lights.output, ambient=0.05)
    return _rig(_camera(scene), lights, CHANNELS)


def test_lights_each_channel_raises_the_mean() -> None:
    """Both channels working: PASS with the rise per channel."""
    lights = t.FakeLights({1: 200, 2: 120})
    result = st.run_lights(_lights_rig(lights), _cal())
    assert result.status == "PASS", result.message
    assert result.measured["rise_top"] == pytest.approx(0.5 * 200 / 255, abs=0.02)
    assert not lights.lit


def test_lights_dead_channel_is_named() -> None:
    """A dead luminaire: FAIL naming its channel and name, the working one not."""
    lights = t.FakeLights({1: 200, 2: 120}, dead=[2])
    result = st.run_lights(_lights_rig(lights), _cal())
    assert result.status == "FAIL"
    assert "channel 2 (side)" in result.message and "channel 1" not in result.message


def test_lights_refused_channel_is_named() -> None:
    """A controller answering NG for a channel: FAIL naming it, lights left off."""
    lights = t.FakeLights({1: 200, 2: 120}, refuse=[1])
    result = st.run_lights(_lights_rig(lights), _cal())
    assert result.status == "FAIL" and "channel 1 (top): the controller refused" in result.message
    assert not lights.lit


def test_lights_without_luminaires_skip() -> None:
    """No luminaires configured: SKIP with the reason."""
    result = st.run_lights(_rig(_camera(t.focus_scene(SHAPE))), _cal())
    assert result.status == "SKIP" and "no luminaires" in result.message


@pytest.fixture
def simulated_lights() -> Iterator[Any]:
    """The real serial driver on the in-process controller simulator (pty)."""
    cfg = _lights_cfg(*CHANNELS, backend="simulator")
    lights = open_lights(cfg)
    lights.open()
    yield lights, cfg
    lights.close()


def test_lights_through_the_simulated_controller(simulated_lights: Any) -> None:
    """The lights step over the real serial path: the scene reads the simulator's channel
    states, so each channel switched alone shows up in the image."""
    lights, cfg = simulated_lights
    scene = t.lit_scene(t.focus_scene(SHAPE), t.simulator_light(lights.simulator),
                        ambient=0.05)
    rig = st.Rig(_camera(scene), lights, cfg, timeout_s=1.0, sleep=lambda s: None)
    result = st.run_lights(rig, _cal())
    assert result.status == "PASS", result.message
    assert result.measured["rise_side"] == pytest.approx(0.5 * 120 / 255, abs=0.02)
    assert not lights.simulator.lit_channels()


# ------------------------------------------------------------------------- GenICam: viky


@pytest.fixture
def viky() -> Iterator[Camera]:
    """The first viky device through harvesters (the genicam wheel's GenTL producer)."""
    cfg = CameraConfig.model_validate({"name": "viky", "backend": "genicam", "timeout_s": 3.0,
                                       "genicam": {"cti": ["viky"], "index": 0}})
    cam = open_camera(cfg, Path.cwd())
    cam.open()
    yield cam
    cam.close()


def test_viky_steps_run_without_crashing(viky: Camera) -> None:
    """viky has no ExposureTime node: exposure SKIPs saying so; the other steps measure its
    test image and report PASS or FAIL with a message, none raises."""
    rig = st.Rig(viky, timeout_s=3.0)
    exposure = st.run_exposure(rig, _cal())
    assert exposure.status == "SKIP" and "no ExposureTime feature" in exposure.message
    cal = _cal(focus_frames=2, dark_frames=2, flat_frames=2, scale_frames=1)
    for result in (st.run_focus(rig, cal), st.run_dark(rig, cal), st.run_flat(rig, cal, None),
                   st.run_scale(rig, cal), st.run_lights(rig, cal)):
        assert result.status in ("PASS", "FAIL", "SKIP") and result.message
