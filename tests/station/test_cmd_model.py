"""``station model info``, ``station model operating-point`` and ``station model refit-head``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

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


def _refit_setup(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """A tiny tile dataset, disjoint train / val lists and a lite0 checkpoint with a head."""
    from tests.models.test_data import make_tile_dataset
    from tests.station.test_qualify import lite0_with_head

    data = make_tile_dataset(tmp_path / "tiles", per_class=2)
    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    train.write_text("".join(f"{c}/exp0_num_{c}0\n" for c in ("Free", "Blowhole", "Crack")))
    val.write_text("".join(f"{c}/exp1_num_{c}1\n" for c in ("Free", "Blowhole", "Crack")))
    return data, train, val, lite0_with_head(tmp_path)


def test_refit_head_command_fits_the_head_and_chooses_the_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """station model refit-head: only the head's weights change, the operating point is chosen
    on --val-list (flips as the source point: none here), and the fit and the point are
    printed and recorded in the provenance."""
    from models.checkpoint import load_checkpoint

    data, train, val, src = _refit_setup(tmp_path)
    out = tmp_path / "refit.ckpt"
    assert main(["model", "refit-head", str(src), "--data", str(data), "--train-list",
                 str(train), "--val-list", str(val), "--out", str(out), "--device", "cpu",
                 "--steps", "3", "--max-false-reject", "0.5"]) == 0
    text = capsys.readouterr().out
    new, old = load_checkpoint(out), load_checkpoint(src)
    changed = {k for k, v in old.model.state_dict().items()
               if not torch.equal(v, new.model.state_dict()[k])}
    assert changed <= {"classification_head.conv.weight", "classification_head.conv.bias"}
    assert changed
    op = new.meta.operating_point
    assert op is not None and "val.txt" in op.chosen_on and not op.flips
    assert op.false_reject_target == 0.5
    refit = new.meta.provenance["head_refit"]
    assert refit["from"] == old.meta.model_id and refit["images"] == 3 and refit["steps"] == 3
    assert "head fitted on 3 images (2 defective) x 3 flips, 3 steps" in text
    assert op.op_id in text


@pytest.mark.parametrize("args,words", [
    (["--steps", "0"], ["--steps 0", ">= 1"]),
    (["--max-false-reject", "-1"], ["--max-false-reject -1", "[0, 1]"]),
    (["--train-list", "/nonexistent/t.txt"], ["--train-list /nonexistent/t.txt",
                                              "no such file"]),
    (["--val-list", "SAME"], ["share 3 image(s)", "disjoint lists"]),
])
def test_refit_head_command_refuses_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], words: list[str]
) -> None:
    """Bad arguments and overlapping lists exit non-zero naming the value and the rule;
    nothing is written."""
    data, train, val, src = _refit_setup(tmp_path)
    out = tmp_path / "refit.ckpt"
    args = [str(train) if a == "SAME" else a for a in args]
    base = ["model", "refit-head", str(src), "--data", str(data), "--train-list", str(train),
            "--val-list", str(val), "--out", str(out), "--device", "cpu", "--steps", "2"]
    assert main(base + args) != 0
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert not out.exists()


def test_refit_head_command_refuses_a_model_without_a_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint without an image head: exit non-zero, the fix named."""
    data, train, val, _ = _refit_setup(tmp_path)
    src = save_tiny(tmp_path / "t.ckpt", trained=True)
    assert main(["model", "refit-head", str(src), "--data", str(data), "--train-list",
                 str(train), "--val-list", str(val), "--out", str(tmp_path / "n.ckpt"),
                 "--device", "cpu"]) != 0
    assert "no image head" in capsys.readouterr().err
