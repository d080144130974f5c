"""station evaluate's engine: every public report key and file."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from models.build import ModelSpec, build_model
from models.checkpoint import load_checkpoint, save_checkpoint
from models.evaluate import (
    THUMB_HEIGHT,
    ErrorThumb,
    error_thumb,
    evaluate,
    part_score,
    write_report,
)
from models.operating_point import ImageRecord, OperatingPoint
from models.scoring import RuntimeScorer
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
    "image.auroc",
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
    from models.data import load_dataset

    data = make_tile_dataset(tmp_path / "tiles", per_class=2)
    ckpt = load_checkpoint(tiny_checkpoint(tmp_path / "m.pt", ["Blowhole", "Crack"]))
    out = tmp_path / "report"
    op = ckpt.meta.effective_operating_point()
    errors: list[ErrorThumb] = []
    acc = evaluate(RuntimeScorer(ckpt), ckpt.meta.spec.defect_classes, op,
                   load_dataset(data, "folder-classes"), errors=errors)
    write_report(acc, out, {"model": "tiny"}, errors)
    report = json.loads((out / "report.json").read_text())
    for key in PUBLIC_KEYS:
        assert isinstance(report[key], float), key
    for cls in ("Blowhole", "Crack"):
        for m in ("precision", "recall", "f1", "iou"):
            assert f"class.{cls}.{m}" in report
    assert len(acc.image_labels) == 6
    assert len(report["pixel_pr_curve"]) > 10 and len(report["image_sweep"]) >= 1
    conf = json.loads((out / "confusion_matrix.json").read_text())
    assert len(conf["pixel"]["matrix"]) == 3 and len(conf["image"]["matrix"]) == 3
    assert conf["image"]["cols_prediction"][-1] == "no region"
    for name in ("report.md", "pr_curve.png", "image_sweep.png", "confusion_matrix.png",
                 "errors.png"):
        assert (out / name).stat().st_size > 0, name
    # every wrongly decided image is listed (json and md) and drawn
    wrong = [n for n, t, p in zip(acc.image_names, acc.image_labels, acc.image_preds,
                                  strict=True) if (t > 0) != (p > 0)]
    assert sorted(e["image"] for e in report["image_errors"]) == sorted(wrong)
    assert len(errors) == len(wrong)
    md = (out / "report.md").read_text()
    assert all(n in md for n in wrong)


def test_error_thumbnails_outline_truth_and_prediction() -> None:
    """A thumbnail is THUMB_HEIGHT px high, keeps the aspect ratio, and shows the true
    defect in green and the model's in red."""
    import numpy as np

    img = np.full((300, 450), 90, np.uint8)
    truth = np.zeros_like(img)
    truth[50:120, 60:140] = 1
    pred = np.zeros_like(img)
    pred[200:260, 300:400] = 2
    t = error_thumb(img, truth, pred, "missed: x")
    assert t.image.shape == (THUMB_HEIGHT, 225, 3)
    g, r = (t.image[..., k].astype(int) for k in (1, 2))
    assert ((g - r) > 60).any() and ((r - g) > 60).any()
    assert t.caption == "missed: x"


def test_part_score_ranks_images_as_the_rule_flags_them() -> None:
    """For each rule, an image is flagged exactly when its part score reaches the rule's own
    cut (1 for region ratios, 0 for the combined score, the threshold for the head)."""
    seg = OperatingPoint(rule="segmentation", pixel_thresholds={"a": 0.5},
                         min_area_px={"a": 10})
    assert part_score(seg, ImageRecord({"a": 10}, None, "a")) == 1.0
    assert part_score(seg, ImageRecord({"a": 5}, None, "")) == 0.5
    either = seg.model_copy(update={"rule": "either", "head_threshold": 2.0})
    assert part_score(either, ImageRecord({"a": 0}, 2.5, "a")) == 0.5
    assert part_score(either, ImageRecord({"a": 20}, -9.0, "a")) > 0
    assert part_score(either, ImageRecord({"a": 5}, 1.0, "")) < 0
    head = seg.model_copy(update={"rule": "image_head", "head_threshold": 2.0})
    assert part_score(head, ImageRecord({"a": 99}, 1.5, "")) == 1.5


def test_an_image_in_a_defect_folder_with_an_empty_mask_counts_as_defective() -> None:
    """The image-level truth: the mask's commonest class; with an empty mask, the class its
    sample names (as the operating point's choice counts it); defect-free otherwise."""
    import numpy as np

    from models.evaluate import image_label

    mapping = np.asarray([0, 1, 2], np.uint8)
    gt = np.zeros((4, 4), np.uint8)
    assert image_label(gt, "", ["Blowhole", "Crack"], mapping, 2) == 0
    assert image_label(gt, "Crack", ["Blowhole", "Crack"], mapping, 2) == 2
    gt[0, :3] = 1
    gt[1, :1] = 2
    assert image_label(gt, "Crack", ["Blowhole", "Crack"], mapping, 2) == 1
    binary = np.asarray([0, 1, 1], np.uint8)
    assert image_label(np.zeros((2, 2), np.uint8), "Crack", ["Blowhole", "Crack"], binary, 1) == 1
