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
    verdicts = {json.loads((out / f"{i.stem}.json").read_text())["verdict"] for i in images}
    assert code == (1 if "FAIL" in verdicts else 0)  # exit by the worst verdict


def test_inspect_with_model_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--model runs another checkpoint; --mm-per-px overrides the camera's scale."""
    ckpt = save_tiny(tmp_path / "tiny.ckpt")
    img = SAMPLES / "Blowhole_exp1_num_108719.jpg"
    code = main(["inspect", str(img), "--model", str(ckpt), "--out", str(tmp_path / "o"),
                 "--mm-per-px", "0.05", "--set", "pipeline.device=cpu"])
    record = json.loads((tmp_path / "o" / f"{img.stem}.json").read_text())
    assert code == {"PASS": 0, "FAIL": 1}[record["verdict"]]
    assert record["model"]["model_id"].startswith("tiny@")
    assert record["mm_per_px"] == 0.05
    assert "tiny@" in capsys.readouterr().out


def test_inspect_unreadable_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that is not an image is an ERROR: exit code 2, and the message names it."""
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    ckpt = save_tiny(tmp_path / "tiny.ckpt")
    code = main(["inspect", str(bad), "--model", str(ckpt), "--out", str(tmp_path / "o"),
                 "--set", "pipeline.device=cpu"])
    assert code == 2
    assert "bad.png" in capsys.readouterr().err
    assert json.loads((tmp_path / "o" / "bad.json").read_text())["verdict"] == "ERROR"


def test_missing_and_undecodable_files_are_named(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file and a file that is no image each get their own message and exit 2."""
    assert main(["inspect", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    assert main(["inspect", str(junk), "--out", str(tmp_path / "o")]) == 2
    assert "cannot decode" in capsys.readouterr().err


def test_one_bad_file_does_not_drop_the_table(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A folder argument is read for its images; an undecodable file among good ones is an
    ERROR row and the exit code 2, every other image is still inspected and listed."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("Free_exp0_num_743.jpg", "Crack_exp1_num_265613.jpg"):
        (folder / name).write_bytes((SAMPLES / name).read_bytes())
    (folder / "broken.png").write_text("not an image")
    (folder / "notes.txt").write_text("not an image file name: skipped")
    out = tmp_path / "o"
    code = main(["inspect", str(folder), "--out", str(out), "--set", "pipeline.device=cpu"])
    captured = capsys.readouterr()
    rows = {line.split()[0]: line.split()[1] for line in captured.out.splitlines()[1:-1]}
    assert set(rows) == {"Free_exp0_num_743.jpg", "Crack_exp1_num_265613.jpg", "broken.png"}
    assert rows["broken.png"] == "ERROR" and code == 2
    assert rows["Free_exp0_num_743.jpg"] in ("PASS", "FAIL")
    assert "broken.png" in captured.err and "notes.txt" not in captured.out


def test_bad_arguments_fail_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A path that does not exist (or a folder without images) is refused at once, exit 2:
    the checkpoint, which is corrupt here, is never read."""
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["inspect", str(tmp_path / "typo.png"), str(empty), "--model", str(corrupt),
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert "typo.png: no such file or folder" in err and "a folder without image files" in err
    assert "checkpoint" not in err


def test_help_states_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """`station inspect --help` says what its exit codes mean."""
    with pytest.raises(SystemExit):
        main(["inspect", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "0 every image PASS, 1 at least one FAIL, 2 at least one ERROR" in text
