"""Tests of station.cycle's frame previews: the JPEGs the store keeps for the HMI."""

from __future__ import annotations

import cv2
import numpy as np

from drivers.frame import Frame
from station.cycle import preview_jpeg


def _frame(data: np.ndarray, fmt: str) -> Frame:
    return Frame(camera="cam0", frame_id=1, host_timestamp_ns=0, pixel_format=fmt, data=data)


def _decode(jpeg: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_preview_is_downscaled_to_the_long_side_keeping_the_aspect() -> None:
    """A 3000 x 2000 mono frame becomes a 1024 x 683 JPEG; a small one is never enlarged."""
    big = _decode(preview_jpeg(_frame(np.full((2000, 3000), 90, np.uint8), "Mono8"), 1024))
    assert big.shape[:2] == (683, 1024) and abs(int(big[300, 500, 0]) - 90) <= 2
    small = _decode(preview_jpeg(_frame(np.zeros((100, 60), np.uint8), "Mono8"), 1024))
    assert small.shape[:2] == (100, 60)


def test_bayer_preview_is_in_colour() -> None:
    """A BayerRG8 frame with only its red sites lit gives a red preview (2 x 2 binned)."""
    mosaic = np.zeros((400, 600), np.uint8)
    mosaic[0::2, 0::2] = 220
    img = _decode(preview_jpeg(_frame(mosaic, "BayerRG8"), 150))
    assert img.shape[:2] == (100, 150)
    b, g, r = (int(v) for v in img[50, 75])
    assert r > 180 and g < 40 and b < 40


def test_deep_bayer_and_mono_previews_are_8_bit() -> None:
    """12-bit frames are shifted to 8 bits: full scale is white."""
    mono = _decode(preview_jpeg(_frame(np.full((64, 64), 4095, np.uint16), "Mono12"), 32))
    assert int(mono.min()) >= 250
    bayer = _decode(preview_jpeg(_frame(np.full((64, 64), 4095, np.uint16), "BayerGB12"), 32))
    assert bayer.shape[:2] == (32, 32) and int(bayer.min()) >= 250
