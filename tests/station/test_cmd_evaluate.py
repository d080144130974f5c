"""``station evaluate`` through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from station.cli import main
from tests.models.test_data import make_tile_dataset
from tests.models.test_evaluate import PUBLIC_KEYS, tiny_checkpoint


def test_station_evaluate_writes_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command writes report.json / report.md with every public key and prints them."""
    data = make_tile_dataset(tmp_path / "tiles", per_class=2)
    ckpt = tiny_checkpoint(tmp_path / "m.pt", ["Blowhole", "Crack"])
    out = tmp_path / "rep"
    code = main(
        [
            "evaluate",
            "--model",
            str(ckpt),
            "--data",
            str(data),
            "--format",
            "folder-classes",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert all(k in report for k in PUBLIC_KEYS)
    assert (out / "report.md").is_file()
    assert "pixel.f1" in capsys.readouterr().out


def test_station_evaluate_missing_model_fails_cleanly(tmp_path: Path) -> None:
    """A missing checkpoint is a CheckpointError -> exit code 1, no traceback."""
    data = make_tile_dataset(tmp_path / "tiles", per_class=1)
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tmp_path / "nope.pt"),
                "--data",
                str(data),
                "--out",
                str(tmp_path / "o"),
                "--device",
                "cpu",
            ]
        )
        == 1
    )
