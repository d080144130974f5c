"""Tests of models.metrics: aggregation against a hand-computed confusion."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import (
    Accumulator,
    Scores,
    binary_scores,
    class_scores,
    confusion,
    has_region,
    image_score,
)


def test_confusion_and_scores_by_hand() -> None:
    """gt  = 0 0 1 1 2 2 0 2, pred = 0 1 1 0 2 1 0 2 (3 classes).

    Binary: TP = defect pixels predicted defect = positions 2, 4, 5, 7 -> 4; FP = position 1
    -> 1; FN = position 3 -> 1: P = R = F1 = 0.8, IoU = 4/6. Class 1: TP 1 (pos 2), FP 2
    (pos 1, 5), FN 1 (pos 3): P 1/3, R 1/2, F1 0.4, IoU 0.25. Class 2: TP 2, FP 0, FN 1.
    """
    gt = np.array([0, 0, 1, 1, 2, 2, 0, 2], np.uint8)
    pred = np.array([0, 1, 1, 0, 2, 1, 0, 2], np.uint8)
    conf = confusion(gt, pred, 3)
    assert conf.tolist() == [[2, 1, 0], [1, 1, 0], [0, 1, 2]]
    b = binary_scores(conf)
    assert (b.tp, b.fp, b.fn) == (4, 1, 1)
    assert b.f1 == pytest.approx(0.8) and b.iou == pytest.approx(4 / 6)
    c1 = class_scores(conf, 1)
    assert (c1.precision, c1.recall, c1.f1, c1.iou) == pytest.approx((1 / 3, 0.5, 0.4, 0.25))
    c2 = class_scores(conf, 2)
    assert (c2.tp, c2.fp, c2.fn) == (2, 0, 1)
    assert Scores(0, 0, 0).f1 == 0.0


def test_accumulator_report_sums_over_images() -> None:
    """Two images accumulate pixel counts, per-class mean/std and image-level rates."""
    acc = Accumulator(["a", "b"])
    gt1 = np.array([[0, 1], [1, 0]], np.uint8)
    pred1 = np.array([[0, 1], [0, 0]], np.uint8)
    prob1 = np.array([[0.1, 0.9], [0.4, 0.0]], np.float32)
    acc.add(gt1, pred1, prob1, label=1, score=0.9, image_pred=1, name="one")
    gt2 = np.zeros((2, 2), np.uint8)
    pred2 = np.array([[0, 0], [0, 2]], np.uint8)
    acc.add(gt2, pred2, np.array([[0, 0], [0, 0.7]], np.float32), label=0, score=0.7,
            image_pred=2, name="two")
    r = acc.report()
    # binary: TP 1, FP 1, FN 1
    assert r["pixel.precision"] == pytest.approx(0.5)
    assert r["pixel.recall"] == pytest.approx(0.5)
    assert r["pixel.iou"] == pytest.approx(1 / 3)
    # class a: TP 1 FN 1 -> f1 2/3; class b has no ground truth -> left out of mean
    assert r["class.a.f1"] == pytest.approx(2 / 3)
    assert r["class.mean.f1"] == pytest.approx(2 / 3) and r["class.std.f1"] == 0.0
    assert r["image.defect_recall"] == 1.0 and r["image.false_reject_rate"] == 1.0
    assert acc.image_confusion().tolist() == [[0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert acc.image_errors() == [
        {"image": "two", "truth": "defect-free", "kind": "false reject", "score": 0.7}]
    sweep = {s["threshold"]: s for s in acc.image_sweep()}  # at each distinct score
    assert sorted(sweep) == [0.7, 0.9]
    assert sweep[0.9]["defect_recall"] == 1.0 and sweep[0.9]["false_reject_rate"] == 0.0
    assert sweep[0.7]["false_reject_rate"] == 1.0
    assert r["image.auroc"] == 1.0
    curve = {c["threshold"]: c for c in acc.pixel_pr_curve()}
    assert curve[0.5]["precision"] == pytest.approx(0.5)  # 0.9 (defect) and 0.7 (background)
    assert curve[0.8]["precision"] == pytest.approx(1.0) and curve[0.8]["recall"] == 0.5


def test_image_score_respects_minimum_area() -> None:
    """A 1-pixel spike at 0.95 does not count with min area 4; a 2x2 blob at 0.6 does."""
    prob = np.zeros((10, 10), np.float32)
    prob[1, 1] = 0.95
    prob[5:7, 5:7] = 0.6
    assert image_score(prob, 1) == pytest.approx(0.95)
    assert image_score(prob, 4) == pytest.approx(0.6)
    assert image_score(prob, 5) == 0.0
    assert has_region(prob >= 0.5, 4) and not has_region(prob >= 0.7, 2)


def test_auroc_counts_ties_half_and_works_on_logits() -> None:
    """AUROC is rank-based (logits and probabilities alike); ties count half; one-sided sets
    give 0.5."""
    from models.metrics import auroc

    y = np.array([True, False, True, False])
    assert auroc(np.array([5.0, -3.0, 2.0, 1.0]), y) == 1.0
    assert auroc(np.array([1.0, 1.0, 1.0, 1.0]), y) == 0.5
    assert auroc(np.array([0.0, 1.0, 2.0, 3.0]), y) == 0.25
    assert auroc(np.array([1.0, 2.0]), np.array([True, True])) == 0.5


def test_image_errors_list_misses_first_and_flagged_without_a_region() -> None:
    """Missed defective images come first (highest score first), then false rejects; an
    image flagged with no region drawn (K + 1) counts as flagged, in its own column."""
    acc = Accumulator(["a"])
    z = np.zeros((2, 2), np.uint8)
    zp = np.zeros((2, 2), np.float32)
    acc.add(z, z, zp, label=1, score=-3.0, image_pred=0, name="low miss")
    acc.add(z, z, zp, label=1, score=-1.0, image_pred=0, name="high miss")
    acc.add(z, z, zp, label=0, score=5.0, image_pred=2, name="no-region reject")
    acc.add(z, z, zp, label=1, score=4.0, image_pred=2, name="head only")
    assert [e["image"] for e in acc.image_errors()] == [
        "high miss", "low miss", "no-region reject"]
    assert acc.image_confusion().tolist() == [[0, 0, 1], [2, 0, 1]]
    r = acc.report()
    assert r["image.defect_recall"] == pytest.approx(1 / 3)
    assert r["image.false_reject_rate"] == 1.0
