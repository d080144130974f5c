"""bench.head_box_study: how a box is judged against a defect mask, and the summary."""

from __future__ import annotations

import numpy as np
import pytest

from bench.head_box_study import BoxHit, judge_box, summarise


def test_a_box_hits_when_it_holds_a_defect_pixel_and_is_centred_on_the_defects_middle() -> None:
    """Hit: any defect pixel inside; centred: the middle of the defects' bounding box inside;
    share: the box's part of the image. An empty mask is refused."""
    truth = np.zeros((100, 200), bool)
    truth[40:50, 100:110] = True  # middle (104.5, 44.5)
    assert judge_box((96, 32, 32, 32), truth) == BoxHit(True, True, 1024 / 20000)
    assert judge_box((108, 48, 32, 32), truth) == BoxHit(True, False, 1024 / 20000)
    assert judge_box((0, 0, 32, 32), truth).hit is False
    with pytest.raises(ValueError, match="no defect pixel"):
        judge_box((0, 0, 10, 10), np.zeros((10, 10), bool))


def test_summary_counts_and_rates() -> None:
    """Counts, the hit rate and the median share; an empty list is all zeros."""
    hits = [BoxHit(True, True, 0.1), BoxHit(True, False, 0.3), BoxHit(False, False, 0.2)]
    assert summarise(hits) == {"boxes": 3, "hit": 2, "centred": 1, "hit_rate": 0.6667,
                               "median_share": 0.2}
    assert summarise([])["boxes"] == 0
