"""``station model info`` and ``station model operating-point``."""

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


def test_operating_point_command_writes_a_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """station model operating-point: a new checkpoint that verifies, with the point chosen
    on the listed images, printed with what it gave there."""
    from tests.models.test_data import make_tile_dataset

    data = make_tile_dataset(tmp_path / "tiles", per_class=2)
    lst = tmp_path / "val.txt"
    lst.write_text("Free/exp0_num_Free0\nFree/exp1_num_Free1\nCrack/exp0_num_Crack0\n")
    src = save_tiny(tmp_path / "t.ckpt", trained=True)
    out = tmp_path / "new.ckpt"
    assert main(["model", "operating-point", str(src), "--data", str(data), "--split-list",
                 str(lst), "--out", str(out), "--device", "cpu", "--rule", "segmentation"]) == 0
    text = capsys.readouterr().out
    meta = read_checkpoint(out)[0]
    assert meta.operating_point is not None and meta.operating_point.rule == "segmentation"
    assert meta.operating_point.op_id in text and "of defective images flagged" in text


@pytest.mark.parametrize("args,words", [
    (["--max-false-reject", "2"], ["--max-false-reject 2", "[0, 1]"]),
    (["--min-area-px", "0"], ["--min-area-px 0", ">= 1"]),
    (["--split-list", "/nonexistent/val.txt"], ["/nonexistent/val.txt", "no such file"]),
    (["--rule", "image_head"], ["--rule image_head", "no image head", "segmentation"]),
])
def test_operating_point_command_refuses_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], words: list[str]
) -> None:
    """Bad arguments exit non-zero with the value and the rule; nothing is written."""
    from tests.models.test_data import make_tile_dataset

    data = make_tile_dataset(tmp_path / "tiles", per_class=1)
    lst = tmp_path / "val.txt"
    lst.write_text("Free/exp0_num_Free0\n")
    src = save_tiny(tmp_path / "t.ckpt", trained=True)
    out = tmp_path / "new.ckpt"
    base = ["model", "operating-point", str(src), "--data", str(data), "--split-list",
            str(lst), "--out", str(out), "--device", "cpu"]
    assert main(base + args) != 0
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert not out.exists()


def test_operating_point_command_names_a_list_entry_that_matches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A split list naming an image the dataset lacks: exit non-zero, the entry named."""
    from tests.models.test_data import make_tile_dataset

    data = make_tile_dataset(tmp_path / "tiles", per_class=1)
    lst = tmp_path / "val.txt"
    lst.write_text("Free/exp0_num_Free0\ngarbage/line\n")
    src = save_tiny(tmp_path / "t.ckpt", trained=True)
    assert main(["model", "operating-point", str(src), "--data", str(data), "--split-list",
                 str(lst), "--out", str(tmp_path / "n.ckpt"), "--device", "cpu"]) != 0
    assert "garbage/line" in capsys.readouterr().err
