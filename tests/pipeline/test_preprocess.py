"""Preprocessing: demosaicing against OpenCV, flat-field correction, channels, validation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from config.errors import CalibrationError, PipelineError
from pipeline.preprocess import (
    Normaliser,
    Preprocessor,
    demosaic_bilinear,
    flat_field,
    upload,
    validate_image,
)
from pipeline.types import CameraCalibration, InputImage

#: GenICam Bayer name -> the OpenCV code that means the same layout.
CV_CODES = {
    "BayerRG": cv2.COLOR_BayerBG2RGB,
    "BayerGR": cv2.COLOR_BayerGB2RGB,
    "BayerGB": cv2.COLOR_BayerGR2RGB,
    "BayerBG": cv2.COLOR_BayerRG2RGB,
}
IDENTITY = Normaliser(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])


@pytest.mark.parametrize("pattern", sorted(CV_CODES))
def test_demosaic_matches_opencv_within_one_grey_level(pattern: str) -> None:
    """Bilinear demosaicing agrees with cv2.cvtColor within 1 grey level off the outer rows."""
    rng = np.random.default_rng(1)
    mosaic = rng.integers(0, 256, (50, 66), dtype=np.uint8)
    ours = demosaic_bilinear(torch.from_numpy(mosaic).float(), pattern).permute(1, 2, 0).numpy()
    ref = cv2.cvtColor(mosaic, CV_CODES[pattern]).astype(np.float64)
    diff = np.abs(np.round(ours) - ref)[1:-1, 1:-1]
    assert diff.max() <= 1.0


def test_demosaic_recovers_a_flat_colour_everywhere() -> None:
    """A uniform colour sampled by the mosaic comes back exactly, borders included."""
    r, g, b = 200.0, 120.0, 40.0
    mosaic = np.full((8, 10), g, dtype=np.float32)
    mosaic[0::2, 0::2] = r
    mosaic[1::2, 1::2] = b
    rgb = demosaic_bilinear(torch.from_numpy(mosaic), "BayerRG")
    for channel, value in enumerate((r, g, b)):
        assert torch.allclose(rgb[channel], torch.tensor(value))


def test_preprocessor_16_bit_bayer_through_opencv() -> None:
    """A 12-bit BayerRG12 frame is scaled by 4095 and demosaiced like OpenCV does for 16 bit."""
    rng = np.random.default_rng(2)
    mosaic = rng.integers(0, 4096, (32, 40), dtype=np.uint16)
    pre = Preprocessor(torch.device("cpu"), 3, IDENTITY)
    x = pre(InputImage("cam0", mosaic, "BayerRG12", bits=12))[0].permute(1, 2, 0).numpy()
    ref = cv2.cvtColor(mosaic, cv2.COLOR_BayerBG2RGB).astype(np.float64) / 4095
    assert np.abs(x - ref)[1:-1, 1:-1].max() <= 1.0 / 4095


def test_upload_keeps_uint16_values_above_32767() -> None:
    """uint16 pixels are widened without sign trouble."""
    px = np.array([[0, 1, 32767], [32768, 40000, 65535]], dtype=np.uint16)
    assert upload(px, torch.device("cpu")).tolist() == px.astype(float).tolist()


def test_read_only_pixels_upload_without_a_warning() -> None:
    """A replay camera's shared read-only frames go to the device untouched and unwarned."""
    for dtype in (np.uint8, np.uint16):
        px = np.arange(12, dtype=dtype).reshape(3, 4)
        px.setflags(write=False)
        t = upload(px, torch.device("cpu"))
        t += 1  # the tensor is the pipeline's own
        assert px.tolist() == np.arange(12).reshape(3, 4).tolist()


def test_flat_field_recovers_the_scene() -> None:
    """raw = dark + flat * scene is corrected back to the scene; low flat values are clamped."""
    rng = np.random.default_rng(3)
    scene = rng.uniform(10, 200, (16, 16)).astype(np.float32)
    dark = rng.uniform(0, 8, (16, 16)).astype(np.float32)
    flat = rng.uniform(0.6, 1.4, (16, 16)).astype(np.float32)
    raw = torch.from_numpy(dark + flat * scene)
    out = flat_field(raw, torch.from_numpy(dark), torch.from_numpy(flat), 255.0)
    assert torch.allclose(out, torch.from_numpy(scene), atol=1e-3)
    tiny = flat_field(torch.tensor([[10.0]]), None, torch.tensor([[0.001]]), 255.0, eps=0.5)
    assert tiny.item() == pytest.approx(20.0)
    assert flat_field(torch.tensor([[5.0]]), torch.tensor([[9.0]]), None, 255.0).item() == 0.0


def test_flat_field_on_the_mosaic_before_demosaicing() -> None:
    """Vignetting applied to a Bayer mosaic (per the contract, in raw units) is undone, so a
    uniform grey scene comes out uniform."""
    h, w = 24, 32
    yy, xx = np.mgrid[0:h, 0:w]
    flat = (1.0 - 0.4 * (((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2)).astype(np.float32)
    flat /= flat.mean()
    dark = np.full((h, w), 4.0, dtype=np.float32)
    raw = np.round(dark + flat * 100.0).astype(np.uint8)
    cal = CameraCalibration(dark=dark, flat=flat, calibration_id="c1")
    pre = Preprocessor(torch.device("cpu"), 3, IDENTITY)
    x = pre(InputImage("cam0", raw, "BayerRG8"), cal)[0] * 255
    assert float(x.max() - x.min()) < 1.5  # rounding of the raw frame only
    assert float(x.mean()) == pytest.approx(100.0, abs=0.5)


def test_calibration_of_the_wrong_size_is_refused() -> None:
    """Maps that do not fit the frame raise CalibrationError naming the camera."""
    pre = Preprocessor(torch.device("cpu"), 3, IDENTITY)
    cal = CameraCalibration(flat=np.ones((4, 4), np.float32), calibration_id="x")
    with pytest.raises(CalibrationError, match="cam7"):
        pre(InputImage("cam7", np.zeros((8, 8), np.uint8), "Mono8"), cal)


def test_channels_and_normalisation() -> None:
    """Mono is replicated to RGB, BGR is flipped, RGB becomes luma for a 1-channel network,
    and the checkpoint's mean/std apply."""
    grey = np.full((4, 4), 255, np.uint8)
    norm = Normaliser(mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1.0])
    x = Preprocessor(torch.device("cpu"), 3, norm)(InputImage("c", grey, "Mono8"))
    assert x.shape == (1, 3, 4, 4)
    assert x[0, :, 0, 0].tolist() == [2.0, 1.0, 0.5]
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 0] = 255  # blue
    x = Preprocessor(torch.device("cpu"), 3, IDENTITY)(InputImage("c", bgr, "BGR8"))
    assert x[0, :, 0, 0].tolist() == [0.0, 0.0, 1.0]
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 1] = 255
    x = Preprocessor(torch.device("cpu"), 1, Normaliser([0.0], [1.0]))(
        InputImage("c", rgb, "RGB8"))
    assert x.shape == (1, 1, 4, 4)
    assert x[0, 0, 0, 0].item() == pytest.approx(0.587)


@pytest.mark.parametrize(
    ("pixels", "fmt", "bits", "match"),
    [
        (np.zeros((4, 4), np.float32), "Mono8", 8, "uint8 or uint16"),
        (np.zeros((4, 4), np.uint8), "Mono12", 12, "bits=12"),
        (np.zeros((4, 4), np.uint16), "Mono16", 8, "bits in 9..16"),
        (np.zeros((4, 4), np.uint8), "YUV422_8", 8, "not supported"),
        (np.zeros((4, 4, 3), np.uint8), "Mono8", 8, "2-D"),
        (np.zeros((1, 4), np.uint8), "Mono8", 8, "too small"),
    ],
)
def test_bad_input_raises_pipeline_error(
    pixels: np.ndarray, fmt: str, bits: int, match: str
) -> None:
    """Pixels, format and bit depth that do not agree raise PipelineError saying why."""
    with pytest.raises(PipelineError, match=match):
        validate_image(InputImage("cam0", pixels, fmt, bits=bits))
