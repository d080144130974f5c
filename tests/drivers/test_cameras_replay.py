"""The replay camera: real image files, looping, scaling, Bayer re-mosaic, emulated
ExposureTime and Gain, scene functions, and every error it raises."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import pytest

from config.cameras import CameraConfig, ReplayConfig
from config.errors import (
    CameraError,
    CameraFeatureError,
    CameraLost,
    CameraNotFound,
    CameraTimeout,
    PixelFormatError,
)
from drivers.cameras import REFERENCE_EXPOSURE_US, ReplayCamera, open_camera
from drivers.pixels import BAYER_CELLS, mosaic

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def _camera(tmp_path: Path | None = None, **replay: object) -> ReplayCamera:
    cfg = CameraConfig(name="cam0", replay=ReplayConfig(**replay))
    cam = open_camera(cfg, tmp_path or CONFIG_DIR)
    assert isinstance(cam, ReplayCamera)
    return cam


def _grab(cam: ReplayCamera, timeout_s: float = 1.0):  # type: ignore[no-untyped-def]
    cam.trigger()
    return cam.grab(timeout_s)


def _write(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


def test_serves_the_shipped_samples_in_order_and_loops() -> None:
    """Files are served sorted, one per trigger, and start again after the last."""
    cam = _camera(images=["samples/*.png"])
    cam.open()
    files = sorted(CONFIG_DIR.glob("samples/*.png"))
    sources = [_grab(cam).source for _ in range(len(files) + 2)]
    assert sources[: len(files)] == [str(f) for f in files]
    assert sources[len(files):] == [str(files[0]), str(files[1])]
    frame = _grab(cam)
    frame.validate()
    assert frame.pixel_format == "Mono8" and frame.device_timestamp_ns is None
    assert abs(frame.host_timestamp_ns - time.time_ns()) < 5e9
    assert frame.exposure_us == REFERENCE_EXPOSURE_US and frame.gain_db == 0.0
    cam.close()
    cam.close()


def test_loop_off_stops_after_the_last_image(tmp_path: Path) -> None:
    """With loop off the trigger after the last image says so."""
    _write(tmp_path / "a.png", np.full((20, 30), 7, np.uint8))
    cam = _camera(tmp_path, images=["*.png"], loop=False)
    cam.open()
    assert int(_grab(cam).data[0, 0]) == 7
    with pytest.raises(CameraError, match=r"all 1 image.*loop is off"):
        cam.trigger()


def test_scales_to_a_20_mp_bayer_sensor() -> None:
    """A sample becomes a 5472 x 3648 BayerRG8 frame: the whole 20 MP path without cameras."""
    cam = _camera(images=["samples/Free_exp0_num_743.png"], pixel_format="BayerRG8",
                  width=5472, height=3648)
    cam.open()
    frame = _grab(cam)
    frame.validate()
    assert frame.data.shape == (3648, 5472) and frame.data.dtype == np.uint8
    assert (cam.get_feature("Width"), cam.get_feature("Height")) == (5472, 3648)


def test_cached_frames_are_shared_read_only_arrays(tmp_path: Path) -> None:
    """Serving a file frame again hands out the very same read-only array (no copy, no
    conversion): a 20 MP replay frame costs what a dictionary lookup does. Each exposure
    factor has its own cached array; the scene-function source still renders every frame."""
    _write(tmp_path / "a.png", np.full((32, 48), 100, np.uint8))
    _write(tmp_path / "b.png", np.full((32, 48), 50, np.uint8))
    cam = _camera(tmp_path, images=["*.png"], pixel_format="BayerRG8")
    cam.open()
    first = [_grab(cam).data for _ in range(4)]
    assert first[0] is first[2] and first[1] is first[3] and first[0] is not first[1]
    assert not first[0].flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        first[0][0, 0] = 1
    cam.set_feature("ExposureTime", 20000.0)
    bright = [_grab(cam).data for _ in range(3)]
    assert bright[0] is bright[2] and int(bright[0].max()) == 200
    assert int(first[0].max()) == 100  # the reference frame was not touched
    cam.set_feature("ExposureTime", REFERENCE_EXPOSURE_US)
    assert _grab(cam).data is first[1]  # frame 7: file b at the reference exposure again
    nocache = _camera(tmp_path, images=["*.png"], cache_mb=0)
    nocache.open()
    assert _grab(nocache).data is not _grab(nocache).data
    scene = ReplayCamera.from_function("s", lambda i, f: np.full((4, 4), i, np.uint8))
    scene.open()
    a, b = _grab(scene).data, _grab(scene).data
    assert a is not b and a.flags.writeable and int(b[0, 0]) == 1


def test_width_alone_keeps_the_aspect_ratio(tmp_path: Path) -> None:
    """Only a width scales the height by the same factor."""
    _write(tmp_path / "a.png", np.zeros((50, 100), np.uint8))
    cam = _camera(tmp_path, images=["*.png"], width=200)
    cam.open()
    assert _grab(cam).data.shape == (100, 200)


@pytest.mark.parametrize("order", list(BAYER_CELLS))
def test_bayer_remosaic_puts_each_colour_on_its_cfa_site(tmp_path: Path, order: str) -> None:
    """A pure red, green and blue image re-mosaics to the colour's sites of the CFA only."""
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, :2, 0] = 200  # red stripe
    rgb[:, 2:4, 1] = 150  # green stripe
    rgb[:, 4:, 2] = 100  # blue stripe
    _write(tmp_path / "rgb.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cam = _camera(tmp_path, images=["rgb.png"], pixel_format=f"Bayer{order}8")
    cam.open()
    raw = _grab(cam).data
    np.testing.assert_array_equal(raw, mosaic(rgb, order))
    cell = BAYER_CELLS[order]
    red_site = cell.index(0)
    assert raw[red_site // 2, red_site % 2] == 200


def test_12_bit_and_colour_formats(tmp_path: Path) -> None:
    """White becomes 4095 in 12-bit formats; RGB8, BGR8 and RGBa8 keep channel order."""
    _write(tmp_path / "w.png", np.full((8, 8), 255, np.uint8))
    for fmt, top in (("BayerGB12", 4095), ("Mono12", 4095), ("Mono10", 1023)):
        cam = _camera(tmp_path, images=["w.png"], pixel_format=fmt)
        cam.open()
        f = _grab(cam)
        f.validate()
        assert f.data.dtype == np.uint16 and int(f.data.max()) == top
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR
    _write(tmp_path / "red.png", bgr)
    for fmt, channel in (("RGB8", 0), ("BGR8", 2), ("RGBa8", 0)):
        cam = _camera(tmp_path, images=["red.png"], pixel_format=fmt)
        cam.open()
        f = _grab(cam)
        f.validate()
        assert int(f.data[0, 0, channel]) == 255
    assert int(f.data[0, 0, 3]) == 255  # opaque alpha


def test_exposure_scales_linearly_and_saturates(tmp_path: Path) -> None:
    """Doubling ExposureTime doubles the pixel values, up to the format's maximum."""
    _write(tmp_path / "g.png", np.array([[10, 100, 200]], np.uint8).repeat(16, 0))
    cam = _camera(tmp_path, images=["g.png"])
    cam.open()
    assert _grab(cam).data[0].tolist() == [10, 100, 200]
    cam.set_feature("ExposureTime", 20000.0)
    f = _grab(cam)
    assert f.data[0].tolist() == [20, 200, 255] and f.exposure_us == 20000.0
    cam.set_feature("ExposureTime", 5000)
    assert _grab(cam).data[0].tolist() == [5, 50, 100]
    assert cam.get_feature("ExposureTime") == 5000.0


def test_gain_in_db_scales_like_exposure(tmp_path: Path) -> None:
    """+6.0206 dB doubles, like twice the exposure; frames report the gain in force."""
    _write(tmp_path / "g.png", np.full((8, 8), 60, np.uint8))
    cam = _camera(tmp_path, images=["g.png"], gain_db=20 * np.log10(2))
    cam.open()
    f = _grab(cam)
    assert int(f.data[0, 0]) == 120 and f.gain_db == pytest.approx(6.0206, abs=1e-3)


def test_scene_function_gets_index_and_features() -> None:
    """A scene function is called with the frame index and the features in force."""
    calls: list[tuple[int, dict[str, object]]] = []

    def scene(i: int, features: Mapping[str, object]) -> np.ndarray:
        calls.append((i, dict(features)))
        return np.full((10, 12), 1000 + i, np.uint16)

    cam = ReplayCamera.from_function("synthetic", scene, pixel_format="Mono12")
    cam.open()
    cam.set_feature("ExposureTime", 20000.0)
    f0, f1 = _grab(cam), _grab(cam)
    assert int(f0.data[0, 0]) == 2000 and int(f1.data[0, 0]) == 2002
    assert calls[0][0] == 0 and calls[1][0] == 1
    assert calls[0][1]["ExposureTime"] == 20000.0 and calls[0][1]["PixelFormat"] == "Mono12"
    assert f0.source == "function:scene"


def test_scene_function_float_rgb_is_converted() -> None:
    """A float RGB scene in [0, 1] is re-mosaiced into the Bayer format."""
    def scene(i: int, features: Mapping[str, object]) -> np.ndarray:
        img = np.zeros((4, 4, 3), np.float32)
        img[..., 1] = 1.0
        return img

    cam = ReplayCamera.from_function("s", scene, pixel_format="BayerRG8")
    cam.open()
    raw = _grab(cam).data
    assert raw[0, 1] == 255 and raw[0, 0] == 0 and raw[1, 1] == 0


def test_feature_errors_name_the_node_and_what_is_allowed() -> None:
    """Unknown, read-only, out-of-range and wrongly typed features each say what is wrong."""
    cam = _camera(images=["samples/*.png"])
    with pytest.raises(CameraFeatureError, match=r"no feature 'Shutter'.*ExposureTime, Gain"):
        cam.get_feature("Shutter")
    with pytest.raises(CameraFeatureError, match=r"no feature 'Shutter'"):
        cam.set_feature("Shutter", 1)
    with pytest.raises(CameraFeatureError, match=r"'PixelFormat'.*read-only"):
        cam.set_feature("PixelFormat", "Mono8")
    with pytest.raises(CameraFeatureError, match=r"'Gain' = 99.*allowed -20 \.\. 48 \[dB\]"):
        cam.set_feature("Gain", 99.0)
    with pytest.raises(CameraFeatureError, match=r"needs a number"):
        cam.set_feature("ExposureTime", "fast")
    assert cam.get_feature("PixelFormat") == "Mono8"


def test_missing_and_unreadable_files_are_clear(tmp_path: Path) -> None:
    """No match raises CameraNotFound naming the pattern; an undecodable file names itself."""
    cam = _camera(tmp_path, images=["nothing/*.png"])
    with pytest.raises(CameraNotFound, match=r"no image file matches 'nothing/\*\.png'"):
        cam.open()
    (tmp_path / "bad.png").write_bytes(b"not a png")
    cam = _camera(tmp_path, images=["bad.png"])
    cam.open()
    cam.trigger()
    with pytest.raises(CameraError, match=r"cannot decode image file .*bad.png"):
        cam.grab(1.0)


def test_state_errors_and_unsupported_format() -> None:
    """grab before trigger, trigger before open and a packed format are refused clearly."""
    cam = _camera(images=["samples/*.png"])
    with pytest.raises(CameraLost, match=r"not open"):
        cam.trigger()
    cam.open()
    with pytest.raises(CameraError, match=r"grab\(\) without trigger"):
        cam.grab(1.0)
    with pytest.raises(PixelFormatError, match=r"packed"):
        ReplayCamera.from_function("s", lambda i, f: np.zeros((2, 2)), pixel_format="Mono12p")


def test_readout_time_and_injected_faults() -> None:
    """readout_ms delays a grab; injected timeout, incomplete and lost faults behave."""
    cam = _camera(images=["samples/*.png"], readout_ms=50)
    cam.open()
    t0 = time.monotonic()
    _grab(cam)
    assert time.monotonic() - t0 >= 0.05
    with pytest.raises(CameraTimeout, match=r"readout takes"):
        _grab(cam, timeout_s=0.01)
    cam.inject_fault("incomplete")
    assert _grab(cam).complete is False
    assert _grab(cam).complete is True
    cam.inject_fault("timeout")
    with pytest.raises(CameraTimeout, match=r"injected"):
        _grab(cam, timeout_s=0.05)
    cam.inject_fault("lost", count=2)
    with pytest.raises(CameraLost, match=r"unplugged"):
        _grab(cam)
    assert cam.health().connected is False
    with pytest.raises(CameraLost, match=r"0 more open"):
        cam.open()
    cam.open()
    h = cam.health()
    assert h.connected and h.reconnects == 1 and h.errors == 3

