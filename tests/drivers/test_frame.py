"""The Frame contract and the pixel-format table."""

from __future__ import annotations

import numpy as np
import pytest

from config.errors import PixelFormatError
from drivers.frame import PIXEL_FORMATS, Frame, pixel_format_info


def _frame(fmt: str, data: np.ndarray) -> Frame:
    return Frame(camera="cam0", frame_id=1, host_timestamp_ns=1, pixel_format=fmt, data=data)


def test_issue_formats_are_supported() -> None:
    """Every format the issue names is in the table with its channels and bits."""
    for name in ("Mono8", "Mono10", "Mono12", "RGB8", "BGR8", "RGBa8", "BayerRG8", "BayerGB8",
                 "BayerGR8", "BayerBG8", "BayerRG12", "BayerGB12", "BayerGR12", "BayerBG12"):
        assert name in PIXEL_FORMATS
    assert pixel_format_info("RGBa8") == (4, 8)
    assert pixel_format_info("Mono12") == (1, 12)


def test_packed_formats_are_rejected_with_the_unpacked_hint() -> None:
    """A packed format names itself and says to use the unpacked form."""
    for name in ("Mono12p", "BayerRG12p", "Mono12Packed"):
        with pytest.raises(PixelFormatError, match="packed formats are not supported"):
            pixel_format_info(name)


def test_unknown_format_lists_the_supported_ones() -> None:
    """An unknown name lists the supported formats."""
    with pytest.raises(PixelFormatError, match="supported: Mono8"):
        pixel_format_info("YUV422_8")


def test_size_properties_and_validate() -> None:
    """width/height/bits come from the array and the format; validate accepts a good frame."""
    f = _frame("RGBa8", np.zeros((3, 5, 4), np.uint8))
    assert (f.width, f.height, f.bits) == (5, 3, 8)
    f.validate()
    _frame("Mono12", np.zeros((3, 5), np.uint16)).validate()


def test_validate_names_dtype_and_shape_mismatches() -> None:
    """A 12-bit format in uint8, or a colour format with one channel, is refused clearly."""
    with pytest.raises(PixelFormatError, match="needs uint16 pixels"):
        _frame("Mono12", np.zeros((3, 5), np.uint8)).validate()
    with pytest.raises(PixelFormatError, match="needs 3 channel"):
        _frame("RGB8", np.zeros((3, 5), np.uint8)).validate()
