"""bench.head_fit_study: the head's scores with flips averaged, and the budget threshold."""

from __future__ import annotations

import numpy as np
import torch

from bench.head_fit_study import head_scores, score
from models.build import MaxImageHead


def test_head_scores_average_the_variants_then_take_the_largest_class() -> None:
    """Two variants of one image: each class logit is the maximum over positions, the two
    variants are averaged per class, and the part score is the largest class."""
    head = MaxImageHead(1, 2)
    with torch.no_grad():
        head.conv.weight.copy_(torch.tensor([[[[1.0]]], [[[-1.0]]]]))
        assert head.conv.bias is not None
        head.conv.bias.zero_()
    a = torch.tensor([[[1.0, 3.0]]])  # class 0 max 3, class 1 max -1
    b = torch.tensor([[[-5.0, 1.0]]])  # class 0 max 1, class 1 max 5
    assert head_scores(head, [[a, b]]).tolist() == [2.0]  # mean (3+1)/2, (-1+5)/2 -> 2


def test_score_keeps_false_rejects_within_the_budget() -> None:
    """50 defect-free and 10 defective scores at 2 %: one false reject at most; recall counts
    the defective at or above the threshold."""
    free = np.arange(50, dtype=np.float64)
    scores = np.concatenate([free, np.asarray([48.5] * 5 + [10.0] * 5)])
    defective = np.asarray([False] * 50 + [True] * 10)
    s = score(scores, defective, 0.02)
    assert s["false_reject_rate"] == 1 / 50
    assert s["recall"] == 0.5
    assert 0.5 < s["auroc"] < 1.0
