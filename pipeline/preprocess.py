"""Raw pixels -> normalised network input on the device.

Steps, all on the device after one upload of the raw buffer (uint8/uint16, never expanded on
the host): dark/flat-field correction in raw units (on the mosaic for Bayer formats, per the
contract in :class:`pipeline.types.CameraCalibration`), bilinear demosaicing for Bayer formats,
scaling to [0, 1] by the format's bit depth, channel conversion (grey replicated to RGB, or RGB
to luminance) and the checkpoint's mean/std normalisation.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from config.errors import CalibrationError, PipelineError
from pipeline.types import CameraCalibration, InputImage

#: Bayer pattern per PFNC prefix: (row, col) of the red and of the blue sample in each 2 x 2 cell.
BAYER: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "BayerRG": ((0, 0), (1, 1)),
    "BayerGR": ((0, 1), (1, 0)),
    "BayerGB": ((1, 0), (0, 1)),
    "BayerBG": ((1, 1), (0, 0)),
}
MONO_FORMATS = ("Mono8", "Mono10", "Mono12", "Mono16")
COLOUR_FORMATS = ("RGB8", "BGR8", "RGBa8")
#: ITU-R BT.601 luma weights, for colour input to a one-channel network.
LUMA = (0.299, 0.587, 0.114)


def bayer_pattern(pixel_format: str) -> str | None:
    """``BayerRG`` etc. for a Bayer PFNC name, ``None`` for mono and colour formats."""
    for prefix in BAYER:
        if pixel_format.startswith(prefix):
            return prefix
    return None


def validate_image(image: InputImage) -> None:
    """Raise :class:`PipelineError` when pixels, format and bit depth do not agree."""
    px = image.pixels
    where = f"camera {image.camera!r}"
    if not isinstance(px, np.ndarray):
        raise PipelineError(f"{where}: pixels must be a numpy array, got {type(px).__name__}")
    fmt = image.pixel_format
    if not (bayer_pattern(fmt) or fmt in MONO_FORMATS or fmt in COLOUR_FORMATS):
        raise PipelineError(
            f"{where}: pixel format {fmt!r} is not supported by the pipeline; supported: "
            f"{', '.join(MONO_FORMATS + COLOUR_FORMATS)}, Bayer{{RG,GR,GB,BG}}{{8,10,12,16}}"
        )
    want_ndim = 3 if fmt in COLOUR_FORMATS else 2
    if px.ndim != want_ndim:
        raise PipelineError(
            f"{where}: {fmt} needs a {want_ndim}-D pixel array, got shape {px.shape}"
        )
    if fmt in COLOUR_FORMATS and px.shape[2] != (4 if fmt == "RGBa8" else 3):
        raise PipelineError(f"{where}: {fmt} needs {3 if fmt != 'RGBa8' else 4} channels, "
                            f"got shape {px.shape}")
    if px.shape[0] < 2 or px.shape[1] < 2:
        raise PipelineError(f"{where}: image of shape {px.shape} is too small (min 2 x 2)")
    if px.dtype == np.uint8:
        if image.bits != 8:
            raise PipelineError(f"{where}: uint8 pixels but bits={image.bits}; expected 8")
    elif px.dtype == np.uint16:
        if not 9 <= image.bits <= 16:
            raise PipelineError(f"{where}: uint16 pixels need bits in 9..16, got {image.bits}")
    else:
        raise PipelineError(f"{where}: pixels must be uint8 or uint16, got {px.dtype}")


def upload(pixels: npt.NDArray[np.uint8] | npt.NDArray[np.uint16], device: torch.device
           ) -> torch.Tensor:
    """Copy the raw buffer to the device as it is, then convert to float32 there.

    Read-only buffers (a replay camera's shared frames) are fine: the upload, or the
    conversion on the CPU, makes the copy, and nothing writes into the buffer.
    """
    arr = np.ascontiguousarray(pixels)
    with warnings.catch_warnings():
        # torch warns that it cannot protect a read-only array; it is only read here.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        if arr.dtype == np.uint16:
            # torch has no uint16 arithmetic on every device: reinterpret as int16, widen,
            # unwrap.
            t = torch.from_numpy(arr.view(np.int16)).to(device, non_blocking=True)
            return t.to(torch.int32).bitwise_and(0xFFFF).to(torch.float32)
        return torch.from_numpy(arr).to(device, non_blocking=True).to(torch.float32)


def flat_field(
    raw: torch.Tensor,
    dark: torch.Tensor | None,
    flat: torch.Tensor | None,
    max_value: float,
    eps: float = 0.05,
) -> torch.Tensor:
    """``(raw - dark) / max(flat, eps)``, clipped to [0, max_value]; maps broadcast to ``raw``."""
    out = raw
    if dark is not None:
        out = out - dark
    if flat is not None:
        out = out / flat.clamp_min(eps)
    if dark is None and flat is None:
        return out
    return out.clamp_(0.0, max_value)


def demosaic_bilinear(mosaic: torch.Tensor, pattern: str) -> torch.Tensor:
    """Bilinear demosaicing of a ``(H, W)`` float mosaic -> ``(3, H, W)`` RGB, same units.

    Sparse colour planes convolved with the bilinear kernels (red/blue: [1 2 1]ᵀ[1 2 1]/4,
    green: the cross /4). Reflect padding keeps the colour phase at the borders.
    """
    if pattern not in BAYER:
        raise PipelineError(f"unknown Bayer pattern {pattern!r}; known: {', '.join(BAYER)}")
    h, w = mosaic.shape
    dev, dt = mosaic.device, mosaic.dtype
    (ry, rx), (by, bx) = BAYER[pattern]
    yy = (torch.arange(h, device=dev) % 2).view(h, 1)
    xx = (torch.arange(w, device=dev) % 2).view(1, w)
    red = (yy == ry) & (xx == rx)
    blue = (yy == by) & (xx == bx)
    green = ~(red | blue)
    planes = torch.stack([mosaic * red, mosaic * green, mosaic * blue]).unsqueeze(0)
    rb = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], device=dev, dtype=dt)
    g = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]], device=dev, dtype=dt)
    kernels = (torch.stack([rb, g, rb]) / 4.0).unsqueeze(1)
    padded = F.pad(planes, (1, 1, 1, 1), mode="reflect")
    out: torch.Tensor = F.conv2d(padded, kernels, groups=3)
    return out[0]


def to_channels(img: torch.Tensor, in_channels: int) -> torch.Tensor:
    """``(C, H, W)`` with C in {1, 3} -> ``(in_channels, H, W)`` (replicate or luma)."""
    c = img.shape[0]
    if c == in_channels:
        return img
    if c == 1 and in_channels == 3:
        return img.expand(3, -1, -1)
    if c == 3 and in_channels == 1:
        luma = torch.tensor(LUMA, device=img.device, dtype=img.dtype).view(3, 1, 1)
        return (img * luma).sum(dim=0, keepdim=True)
    raise PipelineError(f"cannot turn {c} image channels into {in_channels} network channels")


@dataclass(frozen=True)
class Normaliser:
    """The checkpoint's normalisation of [0, 1] inputs, per network channel."""

    mean: Sequence[float]
    std: Sequence[float]

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """``(C, H, W)`` in [0, 1] -> normalised ``(C, H, W)``."""
        mean = torch.tensor(list(self.mean), device=img.device, dtype=img.dtype).view(-1, 1, 1)
        std = torch.tensor(list(self.std), device=img.device, dtype=img.dtype).view(-1, 1, 1)
        return (img - mean) / std


class Preprocessor:
    """Turns an :class:`InputImage` into the network's ``(1, C, H, W)`` float32 input.

    Calibration maps are uploaded once per camera and calibration and kept on the device.
    """

    def __init__(
        self, device: torch.device, in_channels: int, normaliser: Normaliser,
        flat_eps: float = 0.05,
    ) -> None:
        self.device = device
        self.in_channels = in_channels
        self.normaliser = normaliser
        self.flat_eps = flat_eps
        self._maps: dict[str, tuple[object, torch.Tensor | None, torch.Tensor | None]] = {}

    def _device_maps(
        self, image: InputImage, cal: CameraCalibration
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        key = (cal.calibration_id, id(cal.dark), id(cal.flat))
        cached = self._maps.get(image.camera)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        shape = image.pixels.shape
        maps: list[torch.Tensor | None] = []
        for name, arr in (("dark", cal.dark), ("flat", cal.flat)):
            if arr is None:
                maps.append(None)
                continue
            ok = arr.shape == shape or (len(shape) == 3 and arr.shape == shape[:2])
            if not ok:
                raise CalibrationError(
                    f"camera {image.camera!r}: {name} map of shape {arr.shape} does not fit "
                    f"the frame {shape} (calibration {cal.calibration_id!r}); recalibrate "
                    "this camera"
                )
            t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(self.device)
            if len(shape) == 3 and t.ndim == 2:
                t = t.unsqueeze(-1)
            maps.append(t)
        self._maps[image.camera] = (key, maps[0], maps[1])
        return maps[0], maps[1]

    def __call__(
        self, image: InputImage, calibration: CameraCalibration | None = None
    ) -> torch.Tensor:
        """Network input ``(1, in_channels, H, W)`` float32 on the device."""
        validate_image(image)
        max_value = float(2**image.bits - 1)
        raw = upload(image.pixels, self.device)
        if calibration is not None and (
            calibration.dark is not None or calibration.flat is not None
        ):
            dark, flat = self._device_maps(image, calibration)
            raw = flat_field(raw, dark, flat, max_value, self.flat_eps)
        fmt = image.pixel_format
        pattern = bayer_pattern(fmt)
        if pattern is not None:
            img = demosaic_bilinear(raw, pattern)
        elif raw.ndim == 2:
            img = raw.unsqueeze(0)
        else:
            img = raw[..., :3].permute(2, 0, 1)
            if fmt == "BGR8":
                img = img.flip(0)
        img = img / max_value
        img = to_channels(img, self.in_channels)
        return self.normaliser(img).unsqueeze(0).contiguous()
