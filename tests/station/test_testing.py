"""The shipped test doubles tell the truth they promise (the calibration tests rely on it)."""

from __future__ import annotations

import numpy as np
import pytest

from config.errors import CameraFeatureError, LightRefused
from drivers.cameras import ReplayCamera
from station import testing as t
from station.calibration.steps import focus_score, roi_slices


def _mean_at(scene: t.SceneFn, exposure_us: float) -> tuple[float, float]:
    cam = ReplayCamera.from_function("t", scene, "Mono16")
    cam.open()
    cam.set_feature("ExposureTime", exposure_us)
    cam.trigger()
    frame = cam.grab(1.0)
    data = frame.data.astype(np.float64) / 65535
    return float(data.mean()), float((frame.data >= 65535).mean())


def test_exposure_scene_saturates_above_the_known_time() -> None:
    """The brightest column reaches full scale at saturate_above_us, the mean follows
    mean_ratio * t / saturate_above_us below it."""
    scene = t.exposure_scene((40, 50), saturate_above_us=40_000.0, mean_ratio=0.6)
    mean, sat = _mean_at(scene, 20_000.0)
    assert mean == pytest.approx(0.6 * 20_000 / 40_000, abs=2e-3) and sat == 0.0
    _, sat_below = _mean_at(scene, 39_000.0)
    _, sat_above = _mean_at(scene, 44_000.0)
    assert sat_below == 0.0 and sat_above > 0.05


def test_focus_sweep_is_sharpest_at_the_known_frame() -> None:
    """Blur grows with the distance from best_frame, so the sharpness score peaks there."""
    scene = t.focus_sweep((60, 80), best_frame=3, sigma_per_frame=0.8)
    scores = [focus_score(scene(i, {}) * 255) for i in range(7)]
    assert int(np.argmax(scores)) == 3
    assert scores[2] < scores[3] > scores[4]


def test_blurred_target_scores_lower() -> None:
    """A blurred target has a much lower variance of the Laplacian than the sharp one."""
    sharp = focus_score(t.focus_scene((60, 80), 0.0)(0, {}) * 255)
    blurred = focus_score(t.focus_scene((60, 80), 2.0)(0, {}) * 255)
    assert blurred < sharp / 20


def test_vignette_scene_has_the_known_falloff() -> None:
    """Centre-to-ROI-corner ratio is 1 - falloff * f² (dark offset 0); lights off = dark only."""
    lights = t.FakeLights({1: 255})
    scene = t.vignette_scene((81, 101), falloff=0.4, level=0.5, dark_level=0.0,
                             light=lights.output)
    assert float(scene(0, {}).max()) == 0.0
    lights.on()
    img = scene(0, {})
    ys, xs = roi_slices(img.shape, 0.6)
    roi = img[ys, xs]
    assert float(roi.min() / roi.max()) == pytest.approx(1 - 0.4 * 0.6**2, abs=0.01)
    assert float(img[40, 50]) == pytest.approx(0.5, abs=1e-6)


def test_chessboard_has_the_known_square_size() -> None:
    """The rendering has (cols+1) x (rows+1) squares of square_px plus the margins."""
    img = t.render_chessboard(cols=5, rows=4, square_px=12, margin_px=10)
    assert img.shape == (4 * 12 + 12 + 20, 5 * 12 + 12 + 20)
    row = img[10 + 6, 10:10 + 6 * 12]
    edges = np.flatnonzero(np.diff(row) != 0) + 1
    assert list(np.diff(edges)) == [12] * (len(edges) - 1)


def test_fake_lights_output_and_faults() -> None:
    """FakeLights reports lit channels' output; dead channels give none, refused ones raise."""
    lights = t.FakeLights({1: 255, 2: 51, 3: 100}, dead=[2], refuse=[3])
    lights.set_channel(1, True)
    lights.set_channel(2, True)
    assert lights.output() == {1: 1.0}
    with pytest.raises(LightRefused):
        lights.set_channel(3, True)
    lights.off()
    assert lights.output() == {} and not lights.health().lit


def test_lit_scene_scales_with_the_channels() -> None:
    """lit_scene multiplies the base scene by ambient + Σ output × response."""
    lights = t.FakeLights({1: 255, 2: 255})
    scene = t.lit_scene(lambda i, f: np.full((2, 2), 0.2, np.float32), lights.output,
                        response={2: 0.5}, ambient=0.1)
    assert float(scene(0, {})[0, 0]) == pytest.approx(0.02)
    lights.set_channel(2, True)
    assert float(scene(0, {})[0, 0]) == pytest.approx(0.12)


def test_hidden_features_raise_like_a_missing_node() -> None:
    """HiddenFeatures answers a hidden node with CameraFeatureError, forwards the rest."""
    inner = ReplayCamera.from_function("h", t.focus_scene((8, 8)))
    cam = t.HiddenFeatures(inner, ["Gain"])
    cam.open()
    assert cam.get_feature("ExposureTime") == 10_000.0
    with pytest.raises(CameraFeatureError, match="'Gain'"):
        cam.get_feature("Gain")
    with pytest.raises(CameraFeatureError):
        cam.set_feature("Gain", 1.0)
    cam.trigger()
    assert cam.grab(1.0).width == 8
    cam.close()
