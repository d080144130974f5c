"""Config of calibration: where it lives, how old it may be, and the targets of every step.

The steps themselves are ``station capture --calibrate`` (``station/calibration``); grey levels
are given as a fraction of the pixel format's full scale (0..1), so one config serves 8-, 10-,
12- and 16-bit cameras alike.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from config._base import Section

#: The calibration steps, in the order they run (dark before flat: the flat needs the dark).
StepName = Literal["exposure", "focus", "dark", "flat", "scale", "lights"]
STEP_ORDER: tuple[StepName, ...] = ("exposure", "focus", "dark", "flat", "scale", "lights")


class CalibrationConfig(Section):
    """How the booth is calibrated and how the daemon treats the calibration."""

    path: str | None = Field(
        None,
        description="Calibration directory; null: <data dir>/calibration [path]",
    )
    max_age_days: float = Field(
        30.0, gt=0, le=3650, description="Older calibrations are reported stale [days]"
    )
    refuse_stale: bool = Field(
        False,
        description="Stale or foreign calibration makes every inspection ERROR instead of a "
        "warning [-]",
    )
    apply_exposure: bool = Field(
        True,
        description="The daemon sets each camera's ExposureTime and Gain to the calibrated "
        "values (overriding the config's features) [-]",
    )
    keep: int = Field(
        10, ge=1, le=1000,
        description="Calibrations kept on disk; older ones are deleted after a new one is "
        "written [count]",
    )
    steps: list[StepName] = Field(
        default_factory=lambda: list(STEP_ORDER),
        min_length=1,
        description="Steps `station capture --calibrate` runs when --steps is not given; on "
        "replay cameras serving image files, dark, flat, lights and scale report SKIP [-]",
    )
    roi_fraction: float = Field(
        0.8, ge=0.1, le=1.0,
        description="Region of interest: the centred share of width and height every step "
        "measures in [-]",
    )
    # -- exposure ---------------------------------------------------------------------------
    exposure_target: float = Field(
        0.45, ge=0.05, le=0.95,
        description="Target mean grey level in the region of interest [fraction of full scale]",
    )
    exposure_tolerance: float = Field(
        0.05, ge=0.005, le=0.3,
        description="Accepted distance of the mean grey level from the target "
        "[fraction of full scale]",
    )
    exposure_max_saturated: float = Field(
        0.01, ge=0.0, le=0.5,
        description="Largest share of region-of-interest pixels at full scale [fraction]",
    )
    exposure_max_iterations: int = Field(
        12, ge=1, le=100, description="Exposure settings tried before giving up [count]"
    )
    exposure_frames: int = Field(
        4, ge=1, le=50,
        description="Frames averaged per exposure setting (steadies noisy or changing "
        "scenes) [count]",
    )
    exposure_min_us: float = Field(
        10.0, gt=0, le=10_000_000, description="Shortest exposure the search may set [µs]"
    )
    exposure_max_us: float = Field(
        100_000.0, gt=0, le=10_000_000,
        description="Longest exposure the search may set; beyond it Gain is raised [µs]",
    )
    gain_max_db: float = Field(
        12.0, ge=0, le=48,
        description="Highest Gain the search may set when exposure alone is not enough [dB]",
    )
    # -- focus ------------------------------------------------------------------------------
    focus_threshold: float = Field(
        100.0, gt=0, le=1_000_000,
        description="Pass threshold of the sharpness score: variance of the Laplacian of the "
        "region of interest, grey levels on an 8-bit scale [grey²]",
    )
    focus_frames: int = Field(
        10, ge=1, le=10_000,
        description="Frames scored in unattended mode (--yes); the best counts [count]",
    )
    focus_max_s: float = Field(
        300.0, gt=0, le=3600,
        description="Longest interactive focus session (ends earlier on Enter or Ctrl-C) [s]",
    )
    # -- dark and flat ----------------------------------------------------------------------
    dark_frames: int = Field(
        16, ge=1, le=1000, description="Lights-off frames averaged into the dark map [count]"
    )
    dark_max_mean: float = Field(
        0.1, gt=0, le=1.0,
        description="A dark map brighter than this on average fails (light leak, lights not "
        "off) [fraction of full scale]",
    )
    flat_frames: int = Field(
        16, ge=1, le=1000,
        description="Frames of the uniform target averaged into the flat map [count]",
    )
    flat_min_uniformity: float = Field(
        0.6, gt=0, le=1.0,
        description="Pass threshold of illumination uniformity: min/max of the flat "
        "(smoothed, dark subtracted) over the region of interest [-]",
    )
    flat_min_mean: float = Field(
        0.1, gt=0, le=1.0,
        description="The flat target must be at least this bright after dark subtraction "
        "[fraction of full scale]",
    )
    # -- scale ------------------------------------------------------------------------------
    chessboard_cols: int = Field(
        9, ge=3, le=100, description="Chessboard inner corners along a row [count]"
    )
    chessboard_rows: int = Field(
        6, ge=3, le=100, description="Chessboard inner corners along a column [count]"
    )
    chessboard_square_mm: float = Field(
        5.0, gt=0, le=1000, description="Side of one chessboard square [mm]"
    )
    scale_frames: int = Field(
        5, ge=1, le=1000,
        description="Frames searched for the chessboard; the views found are combined [count]",
    )
    scale_max_anisotropy: float = Field(
        0.05, ge=0, le=1.0,
        description="Largest relative difference between square size along rows and along "
        "columns (a tilted board or non-square pixels) [fraction]",
    )
    scale_distortion: bool = Field(
        False,
        description="Also estimate lens distortion (OpenCV calibrateCamera over the views "
        "found) [-]",
    )
    # -- lights -----------------------------------------------------------------------------
    lights_margin: float = Field(
        0.05, gt=0, le=1.0,
        description="Rise of the mean grey level each channel alone must cause over all "
        "lights off [fraction of full scale]",
    )

    @model_validator(mode="after")
    def _exposure_range(self) -> CalibrationConfig:
        if self.exposure_min_us >= self.exposure_max_us:
            raise ValueError(
                f"calibration.exposure_min_us ({self.exposure_min_us}) must be below "
                f"calibration.exposure_max_us ({self.exposure_max_us})"
            )
        return self
