"""``station model info``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models import DEFAULT_CHECKPOINT
from models.checkpoint import read_checkpoint
from station.cli import main
from tests.models.tester import save_tiny


def test_info_default(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped model verifies; its id, classes and trained state are shown."""
    meta = read_checkpoint(DEFAULT_CHECKPOINT)[0]
    assert main(["model", "info", "default"]) == 0
    out = capsys.readouterr().out
    assert meta.model_id in out and f"1={meta.spec.classes[1]}" in out
    assert ("untrained" in out) is (not meta.trained)


def test_info_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the meta with model_id and parameter count."""
    path = save_tiny(tmp_path / "t.ckpt", trained=True)
    assert main(["model", "info", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trained"] is True and data["model_id"].startswith("tiny@")
    assert data["spec"]["architecture"] == "plain-unet" and data["parameters"] > 0


def test_info_corrupt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A corrupt checkpoint exits 1 with the file named."""
    path = tmp_path / "broken.ckpt"
    path.write_bytes(b"garbage")
    assert main(["model", "info", str(path)]) == 1
    assert "broken.ckpt" in capsys.readouterr().err
