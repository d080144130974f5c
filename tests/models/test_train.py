"""A two-epoch training smoke run on the CPU (tiny network, tiny data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from config.errors import ConfigError, ModelError
from config.train import TrainConfig, load_train_config
from models.checkpoint import load_checkpoint, read_checkpoint
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
    """Two epochs (one validation each): the training loss drops, best.pt loads in the
    station's format with trained=True, thresholds for every class and an operating point
    chosen on the validation split, and the run's files are there."""
    result = run_tiny(tmp_path)
    hist = result.history
    assert len(hist) == 2 and hist[1]["train_loss"] < hist[0]["train_loss"]
    ckpt = load_checkpoint(result.best_path)
    assert ckpt.meta.trained is True
    assert set(ckpt.meta.thresholds) == {"Blowhole", "Crack"}
    op = ckpt.meta.operating_point
    assert op is not None and op.rule == "segmentation"  # a plain UNet has no image head
    assert set(op.min_area_px) == {"Blowhole", "Crack"}
    assert "validation split" in op.chosen_on and op.false_reject_target == 0.02
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
    summary = json.loads((result.out / "summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["steps"] == 48
    assert summary["operating_point"]["rule"] == "segmentation"


def test_resume_continues_after_the_last_epoch(tmp_path: Path) -> None:
    """resume=True with more epochs picks up at epoch 2 and keeps the earlier history."""
    run_tiny(tmp_path, epochs=1)
    result = run_tiny(tmp_path, epochs=2, resume=True)
    assert [h["epoch"] for h in result.history] == [1.0, 2.0]
    assert result.epochs_run == 2 and result.steps == 48


def test_a_spent_time_budget_still_writes_best_and_its_operating_point(tmp_path: Path) -> None:
    """max_minutes far below one epoch: the run stops on the budget, validates what it has and
    writes best.pt with an operating point all the same."""
    result = run_tiny(tmp_path, max_minutes=0.0001, epochs=50)
    assert result.stopped.startswith("time budget")
    assert load_checkpoint(result.best_path).meta.operating_point is not None
    assert len(result.history) == 1


def test_whole_images_balanced_with_an_image_head(tmp_path: Path) -> None:
    """The GPU recipe's settings on the CPU (lite0 UNet with an image head, whole images,
    balanced sampling, validation every 2 steps): it runs, the head is fitted again on the
    whole training images before the operating point, which may use the head, is chosen."""
    result = run_tiny(
        tmp_path, **{
            "model.architecture": "unet", "model.encoder": "tu-efficientnet_lite0",
            "model.decoder_channels": [16, 16, 8, 8, 8], "model.image_head": True,
            "patch.mode": "whole", "patch.sampler": "balanced", "patch.per_epoch": 8,
            "val_every_steps": 2, "epochs": 2, "lr": 1e-3, "head_refit_steps": 20,
        },
    )
    ckpt = load_checkpoint(result.best_path)
    assert ckpt.meta.spec.image_head
    assert ckpt.meta.operating_point is not None
    refit = ckpt.meta.provenance["head_refit"]  # the head fitted on whole training images
    assert refit["steps"] == 20 and refit["variants"] == 3 and refit["images"] >= 4
    assert json.loads((result.out / "summary.json").read_text())["head_refit"] == refit
    assert [h["step"] for h in result.history] == [2.0, 4.0]
    assert all(0.0 <= h["val_auroc"] <= 1.0 for h in result.history)


def test_learning_rate_warms_up_then_decays_by_steps_or_time() -> None:
    """Linear warm-up to lr, cosine to 5 % of lr at the end of the steps or of the time
    budget, whichever is further along."""
    from models.train import lr_at

    cfg = load_train_config(None, {"lr": 1.0, "warmup_steps": 10})
    assert lr_at(cfg, 0, 100, 0.0) == 0.1
    assert lr_at(cfg, 9, 100, 0.0) == 1.0
    assert lr_at(cfg, 10, 100, 0.0) == 1.0
    assert abs(lr_at(cfg, 100, 100, 0.0) - 0.05) < 1e-9
    assert abs(lr_at(cfg, 10, 100, 1.0) - 0.05) < 1e-9  # the budget is spent
    flat = load_train_config(None, {"lr": 1.0, "warmup_steps": 0, "lr_schedule": "constant"})
    assert lr_at(flat, 50, 100, 0.9) == 1.0


def test_validation_scores_each_image_as_the_runtime_does(tmp_path: Path) -> None:
    """val_layout 'shape' (default): images of different sizes, batched by padded shape, give
    the pixel scores and the part-score AUROC that models.runtime.predict_image gives image by
    image; 'canvas' runs them all on one canvas (same pixel count, its own figures)."""
    import numpy as np
    import torch

    from models.build import ModelSpec, build_model
    from models.checkpoint import make_meta
    from models.data import load_dataset
    from models.metrics import Scores, auroc
    from models.runtime import predict_image
    from models.train import validate

    root = make_tile_dataset(tmp_path / "tiles", per_class=3, size=(40, 36))
    ds = load_dataset(root, "folder-classes")
    spec = ModelSpec.model_validate({
        "architecture": "unet", "encoder": "tu-efficientnet_lite0", "head": "sigmoid",
        "classes": ["background", *ds.classes], "image_head": True,
        "kwargs": {"decoder_channels": [16, 16, 8, 8, 8]}})
    torch.manual_seed(0)
    model = build_model(spec).eval()
    norm = make_meta(name="v", spec=spec, state_dict={}).normalisation
    cfg = TrainConfig.model_validate({"data": {"path": str(root)}, "batch_size": 2})
    assert cfg.val_layout == "shape"
    indices = list(range(len(ds)))
    got = validate(model, spec, norm, ds, indices, cfg, torch.device("cpu"))
    tp = fp = fn = 0
    scores, labels = [], []
    for i in indices:
        image, mask = ds.load(i)
        probs, logits = predict_image(model, "sigmoid", norm.mean, norm.std, 3, image)
        pred, truth = probs.max(axis=0) >= 0.5, mask > 0
        tp += int((pred & truth).sum())
        fp += int((pred & ~truth).sum())
        fn += int((~pred & truth).sum())
        assert logits is not None
        scores.append(float(logits.max()))
        labels.append(bool(truth.any()))
    assert (got.scores.tp, got.scores.fp, got.scores.fn) == (tp, fp, fn)
    assert got.auroc == auroc(np.asarray(scores), np.asarray(labels))
    assert Scores(tp, fp, fn).f1 == got.scores.f1
    on_canvas = validate(model, spec, norm, ds, indices,
                         cfg.model_copy(update={"val_layout": "canvas"}), torch.device("cpu"))
    total = on_canvas.scores.tp + on_canvas.scores.fn
    assert total == tp + fn  # the same defect pixels are counted, on other outputs


def test_a_frozen_encoder_keeps_the_part_score_and_trains_the_masks(tmp_path: Path) -> None:
    """freeze_encoder from a trained checkpoint with an image head: after two epochs the
    encoder and the image head are bit-for-bit those of init_from (batch-norm statistics
    included), so the part score cannot move, while the decoder and the mask head changed."""
    lite: dict[str, object] = {
        "model.architecture": "unet", "model.encoder": "tu-efficientnet_lite0",
        "model.decoder_channels": [16, 16, 8, 8, 8], "model.image_head": True,
        "lr": 1e-3, "head_refit_steps": 0, "patch.per_epoch": 16,
    }
    data = make_tile_dataset(tmp_path / "tiles", per_class=3)
    first = train(tiny_config(data, tmp_path / "first", **lite, epochs=1))
    second = train(tiny_config(
        data, tmp_path / "second", **lite, init_from=str(first.best_path), freeze_encoder=True,
        epochs=2,
    ))
    _, before = read_checkpoint(first.best_path)
    _, after = read_checkpoint(second.best_path)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    kept = [k for k in before if k.startswith(("encoder.", "classification_head."))]
    assert kept and not changed & set(kept)
    assert any(k.startswith("decoder.") for k in changed)
    assert any(k.startswith("segmentation_head.") for k in changed)
    assert load_checkpoint(second.best_path).meta.provenance["freeze_encoder"] is True


def test_freeze_encoder_refuses_a_start_without_weights_and_a_network_without_encoder(
    tmp_path: Path,
) -> None:
    """freeze_encoder without init_from is a config error that names both keys; on a plain
    UNet (no encoder) the run stops with an error saying there is nothing to freeze."""
    with pytest.raises(ConfigError, match=r"freeze_encoder: true needs init_from"):
        load_train_config(None, {"freeze_encoder": True})
    first = run_tiny(tmp_path, epochs=1)
    data = make_tile_dataset(tmp_path / "tiles", per_class=3)
    with pytest.raises(ModelError, match="has no encoder to freeze"):
        train(tiny_config(data, tmp_path / "again", init_from=str(first.best_path),
                          freeze_encoder=True))
