"""Config of the verdict rules: per class and per camera region."""

from __future__ import annotations

from pydantic import Field

from config._base import Section


class ClassRule(Section):
    """When defects of one class fail a part."""

    min_area_mm2: float = Field(
        0.0, ge=0, le=1e6, description="Defects smaller than this are tolerated [mm2]"
    )
    min_area_px: int = Field(
        0, ge=0, le=100_000_000,
        description="Defects smaller than this are tolerated (used when no scale is known) [px]",
    )
    min_score: float = Field(
        0.5, ge=0, le=1, description="Defects with a lower max score are tolerated [0..1]"
    )
    max_count: int = Field(
        0, ge=0, le=10_000, description="This many failing defects are still a PASS [count]"
    )


class RegionOfInterest(Section):
    """The part of a camera's frame that is inspected."""

    polygon: list[tuple[float, float]] | None = Field(
        None, description="Polygon vertices (x, y) in full-frame pixels; null: whole frame [px]"
    )
    mask: str | None = Field(
        None, description="Mask image (non-zero = inspect), relative to the config file [path]"
    )


class RulesConfig(Section):
    """The verdict rules."""

    default: ClassRule = Field(
        default_factory=ClassRule, description="Rule for classes not listed in `classes` [-]"
    )
    classes: dict[str, ClassRule] = Field(
        default_factory=dict, description="Rules by class name [-]"
    )
    regions: dict[str, RegionOfInterest] = Field(
        default_factory=dict, description="Regions of interest by camera name [-]"
    )
