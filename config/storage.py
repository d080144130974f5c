"""Config of the inspection store (SQLite + defect-map files)."""

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
        description="Defect maps beyond this total are deleted, oldest first [MiB]",
    )
    keep_defect_maps: bool = Field(True, description="Write defect-map PNGs [-]")
