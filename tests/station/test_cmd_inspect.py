"""``station inspect`` on the shipped sample images, and with another checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from models import DEFAULT_CHECKPOINT
from models.checkpoint import read_checkpoint
from station.cli import main
from tests.models.tester import save_tiny

SAMPLES = Path(__file__).resolve().parents[2] / "config" / "samples"


def test_inspect_sample_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two sample tiles give an overlay (the image enlarged by a whole factor, a banner band
    above it) and a JSON result each, and a table with one row per image."""
    images = [SAMPLES / "Crack_exp1_num_265613.jpg", SAMPLES / "Free_exp0_num_743.jpg"]
    out = tmp_path / "out"
    code = main(["inspect", *map(str, images), "--out", str(out),
                 "--set", "pipeline.device=cpu"])
    assert code == 0
    table = capsys.readouterr().out
    assert "VERDICT" in table and "Crack_exp1_num_265613.jpg" in table
    for img in images:
        overlay = cv2.imread(str(out / f"{img.stem}.overlay.png"))
        original = cv2.imread(str(img))
        assert overlay is not None and original is not None
        k = overlay.shape[1] // original.shape[1]
        assert k >= 1 and overlay.shape[1] == k * original.shape[1]
        assert overlay.shape[0] > k * original.shape[0]  # the banner's band
        record = json.loads((out / f"{img.stem}.json").read_text())
        assert record["verdict"] in ("PASS", "FAIL")
        assert record["model"]["model_id"] == read_checkpoint(DEFAULT_CHECKPOINT)[0].model_id
        assert record["mm_per_px"] == 0.1
        assert record["width"] == original.shape[1]
        for d in record["defects"]:
            assert d["class_name"] in record["model"]["classes"]
            assert d["area_mm2"] == pytest.approx(d["area_px"] * 0.01)


def test_inspect_with_model_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--model runs another checkpoint; --mm-per-px overrides the camera's scale."""
    ckpt = save_tiny(tmp_path / "tiny.ckpt")
    img = SAMPLES / "Blowhole_exp1_num_108719.jpg"
    code = main(["inspect", str(img), "--model", str(ckpt), "--out", str(tmp_path / "o"),
                 "--mm-per-px", "0.05", "--set", "pipeline.device=cpu"])
    assert code == 0
    record = json.loads((tmp_path / "o" / f"{img.stem}.json").read_text())
    assert record["model"]["model_id"].startswith("tiny@")
    assert record["mm_per_px"] == 0.05
    assert "tiny@" in capsys.readouterr().out


def test_inspect_unreadable_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that is not an image fails with exit code 1 and says which file."""
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    ckpt = save_tiny(tmp_path / "tiny.ckpt")
    code = main(["inspect", str(bad), "--model", str(ckpt), "--out", str(tmp_path / "o"),
                 "--set", "pipeline.device=cpu"])
    assert code == 1
    assert "bad.png" in capsys.readouterr().err


def test_missing_and_undecodable_files_are_named(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file and a file that is no image each get their own message and exit 1."""
    assert main(["inspect", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o")]) == 1
    assert "no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    assert main(["inspect", str(junk), "--out", str(tmp_path / "o")]) == 1
    assert "cannot decode" in capsys.readouterr().err
