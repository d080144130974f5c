"""Config of calibration: where it lives and how old it may be."""

from __future__ import annotations

from pydantic import Field

from config._base import Section


class CalibrationConfig(Section):
    """How the daemon treats the booth calibration."""

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
