"""What goes into the pipeline and what comes out: plain data, no torch, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt


class Verdict(StrEnum):
    """The outcome of one inspection. Only a complete, successful inspection is a PASS."""

    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"


@dataclass(frozen=True)
class InputImage:
    """One camera's raw pixels as the pipeline receives them.

    ``pixels``: ``(H, W)`` for mono/Bayer, ``(H, W, C)`` for colour; uint8 or uint16.
    ``pixel_format``: a GenICam PFNC name (``Mono8``, ``BayerRG8``, ``RGB8``, ...).
    """

    camera: str
    pixels: npt.NDArray[np.uint8] | npt.NDArray[np.uint16]
    pixel_format: str
    bits: int = 8


@dataclass(frozen=True)
class CameraCalibration:
    """Correction maps and scale for one camera (from ``station capture --calibrate``).

    ``dark``: mean of N lights-off frames, float32, full frame size, same units as the raw
    pixels. ``flat``: mean of N frames of a uniform target with lights on, minus ``dark``,
    divided by its mean over the region of interest (so its mean is 1.0). The pipeline applies
    ``(raw - dark) / max(flat, eps)``. For Bayer formats the maps are in the raw mosaic
    (applied before demosaicing). ``mm_per_px``: scale on the part, from the chessboard step.
    """

    dark: npt.NDArray[np.float32] | None = None
    flat: npt.NDArray[np.float32] | None = None
    mm_per_px: float | None = None
    calibration_id: str | None = None


@dataclass(frozen=True)
class Defect:
    """One connected region of one defect class on one camera's frame (full-frame pixels)."""

    camera: str
    class_name: str
    class_index: int
    area_px: int
    area_mm2: float | None
    box: tuple[int, int, int, int]  # x, y, width, height
    centroid: tuple[float, float]  # x, y
    mean_score: float
    max_score: float
    outline: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class CameraResult:
    """The pipeline's result for one camera."""

    camera: str
    width: int
    height: int
    defects: list[Defect]
    #: class index per pixel (0 = background), downscaled by ``pipeline.defect_map_downscale``
    defect_map: npt.NDArray[np.uint8]
    #: the image head's part score (largest class logit over the frame), None without a head
    part_score: float | None = None
    #: the class whose image logit is largest, None without a head
    part_class: str | None = None
    #: where the image head found a defect (x, y, width, height; full-frame pixels): only
    #: when the operating point's head rule failed this camera (``pipeline.head_location``)
    part_box: tuple[int, int, int, int] | None = None
    #: defect regions found in all (``pipeline.max_regions`` largest are in ``defects``)
    regions_found: int = 0
    #: more regions than ``pipeline.max_regions``: only the largest were examined, and the
    #: verdict is never PASS
    capped: bool = False


@dataclass
class PipelineResult:
    """The pipeline's result for one inspection (all cameras)."""

    verdict: Verdict
    reasons: list[str]
    cameras: list[CameraResult]
    #: milliseconds per stage, e.g. {"preprocess": 3.1, "infer": 40.2, ...}
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: what decided: the model's operating point id (``op-…``) or ``config-rules``
    operating_point: str | None = None
