"""The study grid writes one row per run as CSV and markdown."""

from __future__ import annotations

import csv
from pathlib import Path

from models.study import run_study
from tests.models.test_data import make_tile_dataset
from tests.models.test_train import tiny_config


def test_study_grid_rows(tmp_path: Path) -> None:
    """plain-unet x (bce, dice), one epoch each: two rows with pixel scores and times."""
    data = make_tile_dataset(tmp_path / "tiles", per_class=2)
    base = tiny_config(data, tmp_path / "unused", epochs=1)
    rows = run_study(base, tmp_path / "study", ["plain-unet"], ["bce", "dice"])
    assert [r["loss"] for r in rows] == ["bce", "dice"]
    with (tmp_path / "study" / "study.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 2 and all(0.0 <= float(r["pixel.f1"]) <= 1.0 for r in table)
    assert "| plain-unet |" in (tmp_path / "study" / "study.md").read_text()
