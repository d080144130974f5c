"""station.capture: what frames look like on disk and on the preview (the command end to end
is in test_cmd_capture.py)."""

from __future__ import annotations

import numpy as np

from config import load_config
from drivers.frame import Frame
from station.capture import _lossless, compose_preview, frame_metadata, to_display8


def frame(pixel_format: str, data: np.ndarray, camera: str = "cam0") -> Frame:
    """A frame as a camera would give it."""
    return Frame(camera=camera, frame_id=7, host_timestamp_ns=1_700_000_000_000_000_000,
                 pixel_format=pixel_format, data=data, exposure_us=800.0, source="test")


def test_deep_frames_are_scaled_to_8_bit_and_bayer_is_smoothed_for_display() -> None:
    """Mono12 full scale is 255; a Bayer mosaic shows 2 x 2 means, not the checkerboard;
    RGB comes out in OpenCV's BGR order."""
    mono = to_display8(frame("Mono12", np.full((4, 4), 4095, np.uint16)))
    assert mono.dtype == np.uint8 and int(mono.min()) == 255
    mosaic = np.tile(np.array([[0, 200], [200, 0]], np.uint8), (4, 4))
    shown = to_display8(frame("BayerRG8", mosaic))
    assert int(shown[2:6, 2:6].min()) == int(shown[2:6, 2:6].max()) == 100
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 255  # red
    assert to_display8(frame("RGB8", rgb))[0, 0].tolist() == [0, 0, 255]


def test_files_keep_raw_samples_and_colour_in_bgr_order() -> None:
    """The lossless file holds the mosaic untouched and RGB(a) reordered to BGR(a)."""
    mosaic = np.arange(16, dtype=np.uint16).reshape(4, 4)
    assert _lossless(frame("BayerRG12", mosaic)) is mosaic
    rgba = np.zeros((1, 1, 4), np.uint8)
    rgba[0, 0] = [1, 2, 3, 4]
    assert _lossless(frame("RGBa8", rgba))[0, 0].tolist() == [3, 2, 1, 4]


def test_the_sidecar_says_where_the_pixels_came_from() -> None:
    """Camera, frame id, UTC time, format and size, exposure, the lights and their
    intensities, the calibration in force and the software."""
    cfg = load_config("default")
    meta = frame_metadata(frame("Mono8", np.zeros((3, 5), np.uint8)), cfg, "cal-1", True, "f.png")
    assert meta["file"] == "f.png" and meta["camera"] == "cam0" and meta["frame_id"] == 7
    assert meta["host_time"].startswith("2023-11-14T22:13:20")
    assert (meta["width"], meta["height"], meta["bits"]) == (5, 3, 8)
    assert meta["lights"] == "on" and meta["light_intensities"] == {"top": 180, "side": 120}
    assert meta["calibration_id"] == "cal-1" and meta["software"].startswith("station ")
    off = frame_metadata(frame("Mono8", np.zeros((3, 5), np.uint8)), cfg, None, False, "g.png")
    assert off["lights"] == "off" and off["light_intensities"] == {}


def test_the_preview_puts_cameras_side_by_side_at_the_requested_width() -> None:
    """Two cameras of different shapes: one BGR image, each tile half the width, padded to
    the taller one."""
    a = frame("Mono8", np.full((100, 200), 50, np.uint8), "left")
    b = frame("Mono8", np.full((300, 200), 200, np.uint8), "right")
    img = compose_preview([a, b], 320)
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8
    assert int(img[235, 10, 0]) == 0 and int(img[235, 300, 0]) == 200
