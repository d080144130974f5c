"""The Frame: what every camera backend hands to the rest of the station."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from config.errors import PixelFormatError

#: Pixel formats (GenICam PFNC names) the station understands, with (channels, bits).
#: 10/12-bit formats are the *unpacked* forms: one uint16 per pixel, value in the low bits.
PIXEL_FORMATS: dict[str, tuple[int, int]] = {
    "Mono8": (1, 8), "Mono10": (1, 10), "Mono12": (1, 12), "Mono16": (1, 16),
    "RGB8": (3, 8), "BGR8": (3, 8), "RGBa8": (4, 8),
    "BayerRG8": (1, 8), "BayerGB8": (1, 8), "BayerGR8": (1, 8), "BayerBG8": (1, 8),
    "BayerRG10": (1, 10), "BayerGB10": (1, 10), "BayerGR10": (1, 10), "BayerBG10": (1, 10),
    "BayerRG12": (1, 12), "BayerGB12": (1, 12), "BayerGR12": (1, 12), "BayerBG12": (1, 12),
}


def pixel_format_info(name: str) -> tuple[int, int]:
    """(channels, significant bits) of a pixel format; ``PixelFormatError`` if unsupported."""
    try:
        return PIXEL_FORMATS[name]
    except KeyError:
        packed = "p" in name.removeprefix("Bayer")[-2:] or name.endswith("Packed")
        hint = (
            "packed formats are not supported: set the camera's PixelFormat to the unpacked "
            "form (e.g. Mono12 instead of Mono12p)"
            if packed
            else "set the camera's PixelFormat to a supported one"
        )
        raise PixelFormatError(
            f"pixel format {name!r} is not supported; supported: "
            f"{', '.join(PIXEL_FORMATS)}; {hint}"
        ) from None


@dataclass(frozen=True)
class Frame:
    """One image from one camera; its pixels are never a buffer a producer may overwrite.

    ``data`` is either owned by the frame (GenICam/pylon: copied out of the acquisition buffer)
    or read-only and shared (the replay camera's cached frames: ``data.flags.writeable`` is
    False, and every frame served from that file holds the same array). Consumers only read
    it; one that must write copies it first. ``data`` is ``(height, width)`` for mono and
    Bayer formats, ``(height, width, channels)`` for colour; ``uint8`` for 8-bit formats,
    ``uint16`` for deeper ones. An incomplete frame (``complete=False``) is never inspected as
    if it were whole.
    """

    camera: str
    frame_id: int
    host_timestamp_ns: int
    pixel_format: str
    data: npt.NDArray[np.uint8] | npt.NDArray[np.uint16]
    device_timestamp_ns: int | None = None
    exposure_us: float | None = None
    gain_db: float | None = None
    complete: bool = True
    source: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.data.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.data.shape[0])

    @property
    def bits(self) -> int:
        """Significant bits per sample."""
        return pixel_format_info(self.pixel_format)[1]

    def validate(self) -> None:
        """Check that the pixel buffer matches the pixel format; raise ``PixelFormatError``."""
        channels, bits = pixel_format_info(self.pixel_format)
        want_dtype = np.uint8 if bits == 8 else np.uint16
        if self.data.dtype != want_dtype:
            raise PixelFormatError(
                f"frame {self.frame_id} of {self.camera}: {self.pixel_format} needs "
                f"{np.dtype(want_dtype).name} pixels, got {self.data.dtype}"
            )
        ndim_ok = self.data.ndim == 2 if channels == 1 else (
            self.data.ndim == 3 and self.data.shape[2] == channels
        )
        if not ndim_ok:
            raise PixelFormatError(
                f"frame {self.frame_id} of {self.camera}: {self.pixel_format} needs "
                f"{channels} channel(s), got an array of shape {self.data.shape}"
            )
