"""Pixel conversions for the replay camera: grey/colour to a PFNC format, Bayer re-mosaic,
bit depth, scaling and exposure emulation.

Everything here works on numpy arrays and owns its output (no views of the input escape).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from drivers.frame import pixel_format_info

Pixels = npt.NDArray[np.uint8] | npt.NDArray[np.uint16]

#: Colour of each pixel of the 2 x 2 Bayer cell, row-major, for each CFA order (0=R, 1=G, 2=B).
BAYER_CELLS: dict[str, tuple[int, int, int, int]] = {
    "RG": (0, 1, 1, 2),
    "GB": (1, 2, 0, 1),
    "GR": (1, 0, 2, 1),
    "BG": (2, 1, 1, 0),
}


def bayer_order(pixel_format: str) -> str | None:
    """The CFA order ('RG', 'GB', 'GR', 'BG') of a Bayer format, ``None`` for other formats."""
    if pixel_format.startswith("Bayer"):
        return pixel_format[5:7]
    return None


def max_value(pixel_format: str) -> int:
    """The largest sample value of a pixel format (255 for 8-bit, 4095 for 12-bit...)."""
    return (1 << pixel_format_info(pixel_format)[1]) - 1


def dtype_of(pixel_format: str) -> type[np.uint8] | type[np.uint16]:
    """``uint8`` for 8-bit formats, ``uint16`` for deeper (unpacked) ones."""
    return np.uint8 if pixel_format_info(pixel_format)[1] == 8 else np.uint16


def to_rgb_float(image: npt.NDArray[np.generic], source_bits: int | None = None) -> (
    npt.NDArray[np.float32]
):
    """Any grey / RGB / RGBA array -> ``(h, w, 3)`` float32 RGB in [0, 1].

    Integer input is scaled by its bit depth (``source_bits``, else 8 for uint8 and 16 for
    uint16); float input is taken as already in [0, 1]. Colour input is taken as RGB order.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"expected a (h, w), (h, w, 3) or (h, w, 4) image, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        bits = source_bits or (8 if arr.dtype == np.uint8 else 16)
        out = arr.astype(np.float32) / float((1 << bits) - 1)
    else:
        out = arr.astype(np.float32)
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return out


def mosaic(rgb: npt.NDArray[np.generic], order: str) -> npt.NDArray[np.generic]:
    """Re-mosaic an ``(h, w, 3)`` RGB image into a Bayer raw ``(h, w)`` image of ``order``."""
    if order not in BAYER_CELLS:
        raise ValueError(f"Bayer order {order!r}: expected one of {', '.join(BAYER_CELLS)}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"mosaic needs an (h, w, 3) RGB image, got shape {rgb.shape}")
    cell = BAYER_CELLS[order]
    out = np.empty(rgb.shape[:2], dtype=rgb.dtype)
    out[0::2, 0::2] = rgb[0::2, 0::2, cell[0]]
    out[0::2, 1::2] = rgb[0::2, 1::2, cell[1]]
    out[1::2, 0::2] = rgb[1::2, 0::2, cell[2]]
    out[1::2, 1::2] = rgb[1::2, 1::2, cell[3]]
    return out


def convert(
    image: npt.NDArray[np.generic], pixel_format: str, source_bits: int | None = None
) -> Pixels:
    """Convert any grey/RGB/RGBA image (RGB channel order) to ``pixel_format``'s layout.

    Mono formats take the luminance, Bayer formats are re-mosaiced from RGB, colour formats
    replicate grey. Sample values are rescaled to the format's bit depth.
    """
    channels, bits = pixel_format_info(pixel_format)
    top = float((1 << bits) - 1)
    dtype = dtype_of(pixel_format)
    arr = np.asarray(image)
    if arr.dtype == np.uint8 and bits == 8 and source_bits in (None, 8):
        fast = _convert_u8(arr, pixel_format, channels)
        if fast is not None:
            return fast
    rgb = to_rgb_float(arr, source_bits)
    order = bayer_order(pixel_format)
    plane: npt.NDArray[np.float32]
    if order is not None:
        plane = mosaic(rgb, order).astype(np.float32)
    elif channels == 1:
        plane = (0.299 * rgb[:, :, 0] + 0.587 * rgb[:, :, 1] + 0.114 * rgb[:, :, 2]).astype(
            np.float32
        )
    elif pixel_format == "BGR8":
        plane = np.ascontiguousarray(rgb[:, :, ::-1])
    elif channels == 4:
        alpha = np.ones((*rgb.shape[:2], 1), dtype=np.float32)
        plane = np.concatenate([rgb, alpha], axis=2)
    else:
        plane = rgb
    out: Pixels = np.clip(np.rint(plane * top), 0, top).astype(dtype)
    return out


def _convert_u8(
    arr: npt.NDArray[np.uint8], pixel_format: str, channels: int
) -> npt.NDArray[np.uint8] | None:
    """8-bit in, 8-bit out without float temporaries (a 20 MP RGB image would need 240 MB of
    float32); ``None`` for layouts it does not handle."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    grey = arr.ndim == 2
    if not grey and (arr.ndim != 3 or arr.shape[2] not in (3, 4)):
        return None
    rgb: npt.NDArray[np.uint8] = (
        np.ascontiguousarray(arr[:, :, :3]) if not grey
        else np.repeat(arr[:, :, None], 3, axis=2))
    order = bayer_order(pixel_format)
    if order is not None:
        if grey:
            return np.array(arr, dtype=np.uint8, copy=True)
        out: npt.NDArray[np.uint8] = np.asarray(mosaic(rgb, order), dtype=np.uint8)
        return out
    if channels == 1:
        if grey:
            return np.array(arr, dtype=np.uint8, copy=True)
        return np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
    if pixel_format == "BGR8":
        return np.ascontiguousarray(rgb[:, :, ::-1])
    if channels == 4:
        alpha = np.full((*rgb.shape[:2], 1), 255, dtype=np.uint8)
        return np.concatenate([rgb, alpha], axis=2)
    return rgb.copy()


def resize(image: npt.NDArray[np.generic], width: int | None, height: int | None) -> (
    npt.NDArray[np.generic]
):
    """Scale to ``width`` x ``height``; one of them ``None`` keeps the aspect ratio, both
    ``None`` returns the input. Both given stretches (the whole image is kept)."""
    h, w = image.shape[:2]
    if width is None and height is None:
        return image
    if width is None:
        assert height is not None
        width = max(1, round(w * height / h))
    if height is None:
        height = max(1, round(h * width / w))
    if (width, height) == (w, h):
        return image
    interp = cv2.INTER_AREA if width * height < w * h else cv2.INTER_LINEAR
    out: npt.NDArray[np.generic] = np.asarray(
        cv2.resize(np.asarray(image), (width, height), interpolation=interp)
    )
    if image.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return out


def exposure_factor(exposure_us: float, gain_db: float, reference_us: float) -> float:
    """Linear brightness factor of an exposure and a gain against ``reference_us`` at 0 dB."""
    return (exposure_us / reference_us) * math.pow(10.0, gain_db / 20.0)


def apply_factor(pixels: Pixels, factor: float, pixel_format: str) -> Pixels:
    """Scale sample values by ``factor``, rounding and saturating at the format's maximum.

    The alpha channel of RGBa8 is left alone. A look-up table does it: ``cv2.LUT`` for 8-bit
    (which releases the GIL), row blocks of ``numpy.take`` for 16-bit (so other threads, e.g.
    the command socket, get the GIL between blocks of a 20 MP frame). Always a new array.
    """
    top = max_value(pixel_format)
    if factor == 1.0:
        return pixels.copy()
    lut_size = 256 if pixels.dtype == np.uint8 else 65536
    lut = np.clip(np.rint(np.arange(lut_size, dtype=np.float64) * factor), 0, top).astype(
        pixels.dtype
    )
    out: Pixels
    if pixels.dtype == np.uint8:
        src8: npt.NDArray[np.uint8] = np.ascontiguousarray(pixels, dtype=np.uint8)
        flat: npt.NDArray[np.uint8] = src8.reshape(src8.shape[0], -1)
        lut8: npt.NDArray[np.uint8] = lut.astype(np.uint8)
        out = np.asarray(cv2.LUT(flat, lut8), dtype=np.uint8).reshape(src8.shape)
    else:
        out = np.empty_like(pixels)
        rows = max(1, (1 << 20) // max(1, pixels[0].size))
        for r in range(0, pixels.shape[0], rows):
            np.take(lut, pixels[r:r + rows], out=out[r:r + rows])
    if pixel_format == "RGBa8":
        out[:, :, 3] = pixels[:, :, 3]
    return out
