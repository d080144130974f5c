"""``station train`` and ``station study`` through the CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.checkpoint import load_checkpoint
from station.cli import main
from tests.models.test_data import make_tile_dataset

TINY = [
    "--set",
    "model.architecture=plain-unet",
    "--encoder",
    "none",
    "--no-pretrained",
    "--set",
    "model.base_channels=4",
    "--set",
    "model.depth=2",
    "--patch-size",
    "32",
    "--per-epoch",
    "16",
    "--batch-size",
    "4",
    "--threads",
    "1",
    "--device",
    "cpu",
    "--no-progress",
]


def test_station_train_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Flags alone train a model; the best checkpoint loads and is marked trained."""
    data = make_tile_dataset(tmp_path / "tiles", per_class=2)
    out = tmp_path / "run"
    code = main(["train", "--data", str(data), "--out", str(out), "--epochs", "1", *TINY])
    assert code == 0
    assert "best checkpoint" in capsys.readouterr().out
    assert load_checkpoint(out / "best.pt").meta.trained


def test_station_train_config_file_and_bad_key(tmp_path: Path) -> None:
    """--config reads YAML; an unknown key is a usage error (exit code 2)."""
    data = make_tile_dataset(tmp_path / "tiles", per_class=2)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(f"data: {{path: {data}}}\nepochs: 1\nout: {tmp_path / 'r'}\n")
    assert main(["train", "--config", str(cfg), *TINY]) == 0
    cfg.write_text("epoks: 3\n")
    assert main(["train", "--config", str(cfg)]) == 2


def test_station_study_cli(tmp_path: Path) -> None:
    """station study writes study.md and study.csv for a one-cell grid."""
    data = make_tile_dataset(tmp_path / "tiles", per_class=2)
    out = tmp_path / "study"
    code = main(
        [
            "study",
            "--data",
            str(data),
            "--out",
            str(out),
            "--variants",
            "plain-unet",
            "--losses",
            "wbd",
            "--epochs",
            "1",
            "--patch-size",
            "32",
            "--per-epoch",
            "8",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--set",
            "model.base_channels=4",
            "--set",
            "model.depth=2",
        ]
    )
    assert code == 0
    assert (out / "study.md").is_file() and (out / "study.csv").is_file()
