"""bench.channel_probe: the pixels the probe is fitted on and the scores it reports."""

from __future__ import annotations

import numpy as np

from bench.channel_probe import sample_pixels, scores_at


def test_sample_pixels_keeps_the_class_capped_and_some_others() -> None:
    """All class pixels up to the cap, then the asked number of others, no repeats."""
    is_class = np.zeros(10_000, bool)
    is_class[:50] = True
    idx = sample_pixels(is_class, np.random.default_rng(0), max_pos=30, n_neg=100)
    assert len(idx) == 130 and len(set(idx.tolist())) == 130
    assert is_class[idx].sum() == 30
    few = sample_pixels(is_class[:60], np.random.default_rng(0), max_pos=3000, n_neg=1500)
    assert is_class[few].sum() == 50 and len(few) == 60


def test_scores_at_counts_pixels_at_the_threshold() -> None:
    """TP / FP / FN of probs >= t against the truth."""
    probs = np.asarray([0.9, 0.6, 0.4, 0.95], np.float32)
    truth = np.asarray([True, False, True, False])
    s = scores_at(probs, truth, 0.5)
    assert (s.tp, s.fp, s.fn) == (1, 2, 1)
