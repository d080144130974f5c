"""bench.decision_study: the part scores of one image and the threshold at a false-reject
budget."""

from __future__ import annotations

import numpy as np

from bench.decision_study import part_scores, rates, threshold_for


def test_part_scores_of_one_region() -> None:
    """A 3x4 block at 0.95 on a 0.1 background: peak 0.95, region areas 12 px at every
    threshold, top64 between the two levels, the head's largest logit."""
    probs = np.full((2, 20, 20), 0.1, np.float32)
    probs[1, 5:8, 5:9] = 0.95
    s = part_scores(probs, np.asarray([-3.0, 2.5], np.float32))
    assert s["peak"] == np.float32(0.95)
    assert s["head"] == 2.5
    assert s["region@0.5"] == s["region@0.9"] == 12.0
    assert 0.1 < s["top64"] < 0.95


def test_part_scores_without_head_or_region() -> None:
    """No head -> no ``head`` key; nothing above a threshold -> area 0."""
    s = part_scores(np.full((1, 8, 8), 0.2, np.float32), None)
    assert "head" not in s
    assert s["region@0.5"] == 0.0


def test_threshold_keeps_false_rejects_within_budget() -> None:
    """100 defect-free scores at 2 %: at most 2 reach the threshold, ties counted."""
    free = np.arange(100, dtype=np.float64)
    t = threshold_for(free, 0.02)
    assert (free >= t).sum() == 2
    tied = np.asarray([5.0] * 10 + [1.0] * 90)
    assert (tied >= threshold_for(tied, 0.02)).sum() == 0


def test_rates() -> None:
    """Recall over the defective, false rejects over the defect-free."""
    scores = np.asarray([0.9, 0.2, 0.8, 0.1])
    labels = np.asarray([True, True, False, False])
    assert rates(scores, labels, 0.5) == (0.5, 0.5)
