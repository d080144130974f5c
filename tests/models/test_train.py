"""A two-epoch training smoke run on the CPU (tiny network, tiny data)."""

from __future__ import annotations

import json
from pathlib import Path

from config.train import TrainConfig, load_train_config
from models.checkpoint import load_checkpoint
from models.train import TrainResult, train
from tests.models.test_data import make_tile_dataset


def tiny_config(data: Path, out: Path, **extra: object) -> TrainConfig:
    """A training config that runs in seconds: plain UNet (4 channels, depth 2), 32 px
    patches, 96 patches per epoch, lr 1e-2, one thread."""
    overrides: dict[str, object] = {
        "data.path": str(data),
        "data.val_ratio": 0.34,
        "out": str(out),
        "model.architecture": "plain-unet",
        "model.encoder": None,
        "model.pretrained": False,
        "model.base_channels": 4,
        "model.depth": 2,
        "patch.size": 32,
        "patch.per_epoch": 96,
        "batch_size": 4,
        "lr": 1e-2,
        "epochs": 2,
        "threads": 1,
        "progress": False,
        "device": "cpu",
        "augment.affine_p": 0.0,
    }
    overrides.update(extra)
    return load_train_config(None, overrides)


def run_tiny(tmp_path: Path, **extra: object) -> TrainResult:
    """Train the tiny config on a tiny tile dataset."""
    data = make_tile_dataset(tmp_path / "tiles", per_class=3)
    return train(tiny_config(data, tmp_path / "run", **extra))


def test_two_epochs_lower_the_loss_and_write_a_loadable_checkpoint(tmp_path: Path) -> None:
    """Two epochs: the training loss drops, best.pt loads in the station's format with
    trained=True and thresholds for every class, and the run's files are there."""
    result = run_tiny(tmp_path)
    hist = result.history
    assert len(hist) == 2 and hist[1]["train_loss"] < hist[0]["train_loss"]
    ckpt = load_checkpoint(result.best_path)
    assert ckpt.meta.trained is True
    assert set(ckpt.meta.thresholds) == {"Blowhole", "Crack"}
    assert "operating_point" in ckpt.meta.provenance
    for name in (
        "history.csv",
        "history.json",
        "loss_curve.png",
        "last.pt",
        "summary.json",
        "split/train.txt",
        "split/val.txt",
    ):
        assert (result.out / name).is_file(), name
    assert json.loads((result.out / "summary.json").read_text())["epochs_run"] == 2


def test_resume_continues_after_the_last_epoch(tmp_path: Path) -> None:
    """resume=True with more epochs picks up at epoch 3 and keeps the earlier history."""
    run_tiny(tmp_path, epochs=1)
    result = run_tiny(tmp_path, epochs=2, resume=True)
    assert [h["epoch"] for h in result.history] == [1.0, 2.0]
    assert result.epochs_run == 2


def test_operating_point_meets_the_false_reject_target_or_falls_back() -> None:
    """Thresholds from validation maps: the pixel threshold maximises F1; the image point
    keeps false rejects <= the target, and when no point can, the fewest false rejects win
    (target_met = 0)."""
    import numpy as np

    from models.metrics import Scores
    from models.train import ValResult, choose_operating_point

    defect = np.zeros((16, 16), np.float16)
    defect[2:8, 2:8] = 0.9
    gt = np.zeros((16, 16), np.uint8)
    gt[2:8, 2:8] = 1
    free = np.zeros((16, 16), np.float16)
    free[10:12, 10:12] = 0.6  # a small, weaker blob on a good part
    val = ValResult(0.0, Scores(0, 0, 0), [defect, free], [gt, np.zeros_like(gt)])
    ths, op = choose_operating_point(val, ["a"], 16, 0.0)
    assert 0.6 <= ths["a"] < 0.9  # exactly the defect square above the threshold
    assert op["val_defect_recall"] == 1.0 and op["val_false_reject_rate"] == 0.0
    assert op["target_met"] == 1.0
    # a good part covered by a saturated 40 x 40 blob is flagged at every threshold and area
    sure = np.ones((40, 40), np.float16)
    gt2 = np.ones((40, 40), np.uint8)
    bad = ValResult(0.0, Scores(0, 0, 0), [sure, sure], [gt2, np.zeros_like(gt2)])
    _, op2 = choose_operating_point(bad, ["a"], 16, 0.0)
    assert op2["target_met"] == 0.0 and op2["val_false_reject_rate"] == 1.0
    assert op2["val_defect_recall"] == 1.0
