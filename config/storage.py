"""Config of the inspection store (SQLite + defect-map and frame-preview files)."""

from __future__ import annotations

from pydantic import Field

from config._base import Section


class StorageConfig(Section):
    """Where and how much the station records."""

    data_dir: str | None = Field(
        None,
        description="Data directory; null: $XDG_DATA_HOME/station (~/.local/share/station); "
        "--data-dir overrides [path]",
    )
    max_disk_mb: float = Field(
        2048, gt=0, le=10_000_000,
        description="Defect maps and frame previews beyond this total are deleted, oldest "
        "first [MiB]",
    )
    keep_defect_maps: bool = Field(True, description="Write defect-map PNGs [-]")
    preview_px: int = Field(
        1024, ge=0, le=20_000,
        description="Keep every frame as a JPEG downscaled to this long side, for the HMI and "
        "for exports to training; 0: keep none [px]",
    )
