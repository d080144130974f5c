"""station evaluate's engine: every public report key and file."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from models.build import ModelSpec, build_model
from models.checkpoint import save_checkpoint
from models.evaluate import run_evaluation
from tests.models.test_data import make_tile_dataset

PUBLIC_KEYS = (
    "pixel.precision",
    "pixel.recall",
    "pixel.f1",
    "pixel.iou",
    "class.mean.precision",
    "class.mean.recall",
    "class.mean.f1",
    "class.mean.iou",
    "class.std.precision",
    "class.std.recall",
    "class.std.f1",
    "class.std.iou",
    "image.defect_recall",
    "image.false_reject_rate",
)


def tiny_checkpoint(path: Path, classes: list[str]) -> Path:
    """An untrained plain-UNet checkpoint (sigmoid head) for the given defect classes."""
    torch.manual_seed(0)
    spec = ModelSpec(
        architecture="plain-unet",
        encoder=None,
        in_channels=3,
        classes=["background", *classes],
        head="sigmoid",
        kwargs={"base_channels": 4, "depth": 2},
    )
    save_checkpoint(
        path,
        build_model(spec),
        name="tiny",
        spec=spec,
        thresholds={c: 0.5 for c in classes},
        provenance={"operating_point": {"image_threshold": 0.5, "min_area_px": 4}},
    )
    return path


def test_evaluate_writes_every_public_key(tmp_path: Path) -> None:
    """report.json has every public key (and per class the four metrics), report.md,
    the PR curve, the image sweep and the confusion matrix (PNG + JSON) are written."""
    data = make_tile_dataset(tmp_path / "tiles", per_class=2)
    ckpt = tiny_checkpoint(tmp_path / "m.pt", ["Blowhole", "Crack"])
    out = tmp_path / "report"
    run_evaluation(ckpt, data, "folder-classes", out)
    report = json.loads((out / "report.json").read_text())
    for key in PUBLIC_KEYS:
        assert isinstance(report[key], float), key
    for cls in ("Blowhole", "Crack"):
        for m in ("precision", "recall", "f1", "iou"):
            assert f"class.{cls}.{m}" in report
    assert report["info"]["images"] == 6
    assert len(report["pixel_pr_curve"]) > 10 and len(report["image_sweep"]) > 10
    conf = json.loads((out / "confusion_matrix.json").read_text())
    assert len(conf["pixel"]["matrix"]) == 3 and len(conf["image"]["matrix"]) == 3
    for name in ("report.md", "pr_curve.png", "image_sweep.png", "confusion_matrix.png"):
        assert (out / name).stat().st_size > 0, name
