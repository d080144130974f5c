"""Thresholds, class maps, defect maps and connected components of known synthetic defects."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from pipeline.postprocess import (
    classify,
    defect_probabilities,
    defect_regions,
    downscale_defect_map,
    extract_defects,
)
from pipeline.types import Defect

NAMES = ["background", "Blowhole", "Crack"]


def test_thresholds_and_the_winning_class() -> None:
    """A pixel takes the most probable class among those passing their own threshold."""
    p = torch.zeros(2, 1, 4)
    p[0, 0] = torch.tensor([0.6, 0.6, 0.2, 0.3])  # Blowhole, threshold 0.5
    p[1, 0] = torch.tensor([0.3, 0.7, 0.3, 0.35])  # Crack, threshold 0.3
    labels, scores = classify(p, torch.tensor([0.5, 0.3]))
    assert labels[0].tolist() == [1, 2, 2, 2]
    assert scores[0].tolist() == pytest.approx([0.6, 0.7, 0.3, 0.35])
    labels, _ = classify(p, torch.tensor([0.5, 0.9]))
    assert labels[0].tolist() == [1, 1, 0, 0]


def test_region_of_interest_masks_pixels_out() -> None:
    """Pixels outside the region are background whatever the network says."""
    p = torch.ones(1, 2, 3)
    roi = torch.tensor([[True, False, True], [False, True, False]])
    labels, scores = classify(p, torch.tensor([0.5]), roi)
    assert labels.tolist() == [[1, 0, 1], [0, 1, 0]]
    assert float(scores[0, 1]) == 0.0


def test_softmax_head_drops_background() -> None:
    """Defect probabilities of a softmax head skip channel 0; a sigmoid head keeps all."""
    probs = torch.rand(1, 3, 4, 4)
    assert torch.equal(defect_probabilities(probs, "softmax"), probs[0, 1:])
    assert torch.equal(defect_probabilities(probs, "sigmoid"), probs[0])


def test_known_defects_come_back_with_their_area() -> None:
    """A rectangle, a disc and a diagonal line of known areas and scores are found with exactly
    those areas, boxes, centroids, scores and mm², and specks below min area are dropped."""
    labels = np.zeros((120, 160), np.uint8)
    scores = np.zeros((120, 160), np.float32)
    labels[10:30, 20:50] = 2  # Crack rectangle, 20 x 30 = 600 px
    scores[10:30, 20:50] = 0.8
    scores[15, 25] = 0.95
    cv2.circle(labels, (110, 70), 15, 1, -1)  # Blowhole disc
    disc = labels == 1
    scores[disc] = 0.6
    for i in range(10):  # 8-connected diagonal: one component of 10 px
        labels[80 + i, 10 + i] = 2
        scores[80 + i, 10 + i] = 0.7
    labels[5, 150] = 1  # a 1-px speck, below min area
    scores[5, 150] = 0.9
    defects = extract_defects(labels, scores, camera="cam0", class_names=NAMES,
                              min_area_px=4, mm_per_px=0.1)
    assert [d.class_name for d in defects] == ["Blowhole", "Crack", "Crack"]
    blow, rect, line = defects
    assert blow.area_px == int(disc.sum())
    assert blow.centroid == pytest.approx((110.0, 70.0), abs=1e-6)
    assert blow.mean_score == pytest.approx(0.6) and blow.max_score == pytest.approx(0.6)
    assert rect.area_px == 600 and rect.box == (20, 10, 30, 20)
    assert rect.area_mm2 == pytest.approx(6.0)
    assert rect.centroid == pytest.approx((34.5, 19.5))
    assert rect.max_score == pytest.approx(0.95)
    assert rect.mean_score == pytest.approx((599 * 0.8 + 0.95) / 600)
    assert line.area_px == 10 and line.box == (10, 80, 10, 10)
    xs = [p[0] for p in rect.outline]
    ys = [p[1] for p in rect.outline]
    assert (min(xs), max(xs), min(ys), max(ys)) == (20, 49, 10, 29)
    assert all(type(v) is int for v in (rect.area_px, *rect.box))


def test_no_scale_means_no_mm2() -> None:
    """Without a scale the area is in px only."""
    labels = np.zeros((8, 8), np.uint8)
    labels[2:4, 2:4] = 1
    (d,) = extract_defects(labels, labels.astype(np.float32), camera="c", class_names=NAMES,
                           min_area_px=1, mm_per_px=None)
    assert d.area_px == 4 and d.area_mm2 is None


def test_outline_is_capped() -> None:
    """A ragged defect's outline is simplified to at most the configured number of points."""
    rng = np.random.default_rng(0)
    labels = (rng.random((80, 80)) > 0.3).astype(np.uint8)
    labels[:, 40] = 1
    labels[40, :] = 1
    ds = extract_defects(labels, labels.astype(np.float32), camera="c", class_names=NAMES,
                         min_area_px=1, mm_per_px=None, max_outline_points=8)
    assert len(ds[0].outline) <= 8


def test_defect_map_keeps_small_defects_and_the_strongest_class() -> None:
    """Downscaling keeps a 1-px defect and shows the highest-scoring class of each block."""
    labels = torch.zeros(8, 8, dtype=torch.uint8)
    scores = torch.zeros(8, 8)
    labels[1, 1], scores[1, 1] = 2, 0.6
    labels[5, 5], scores[5, 5] = 1, 0.9
    labels[5, 6], scores[5, 6] = 2, 0.7
    small = downscale_defect_map(labels, scores, 4)
    assert small.dtype == torch.uint8
    assert small.tolist() == [[2, 0], [0, 1]]
    odd = downscale_defect_map(torch.ones(9, 5, dtype=torch.uint8), torch.ones(9, 5), 4)
    assert odd.shape == (3, 2)


def test_crops_give_the_same_defects_as_the_whole_frame() -> None:
    """Defects found region by region (only defect regions leave the device) equal those found
    on the whole frame, also when one region's box encloses another region (an L shape around
    a speck)."""
    labels = np.zeros((96, 128), np.uint8)
    labels[10:60, 10:14] = 2  # L shape: vertical bar ...
    labels[56:60, 10:60] = 2  # ... and its foot
    labels[30:33, 30:33] = 1  # a speck inside the L's bounding box, in its own blocks
    labels[80:90, 100:127] = 1
    cv2.circle(labels, (100, 30), 9, 2, -1)
    rng = np.random.default_rng(0)
    scores = np.where(labels > 0, rng.uniform(0.5, 1.0, labels.shape), 0).astype(np.float32)
    factor = 4
    dmap = downscale_defect_map(torch.from_numpy(labels), torch.from_numpy(scores), factor)
    crops = defect_regions(dmap.numpy(), factor, 96, 128)
    assert crops is not None and len(crops) == 4
    kw = {"camera": "c", "class_names": NAMES, "min_area_px": 1, "mm_per_px": 0.1}
    whole = extract_defects(labels, scores, **kw)  # type: ignore[arg-type]
    parts = []
    for c in crops:
        lab = labels[c.y0:c.y1, c.x0:c.x1].copy()
        lab[~c.keep] = 0
        parts += extract_defects(lab, scores[c.y0:c.y1, c.x0:c.x1],
                                 origin=(c.x0, c.y0), **kw)  # type: ignore[arg-type]
    def rounded(ds: list[Defect]) -> list[Defect]:
        out = [dataclasses.replace(d, centroid=(round(d.centroid[0], 9),
                                                round(d.centroid[1], 9)),
                                   mean_score=round(d.mean_score, 9)) for d in ds]
        return sorted(out, key=lambda d: (-d.area_px, d.class_index, d.box))

    assert rounded(parts) == rounded(whole)
    assert defect_regions(np.ones((4, 4), np.uint8), factor, 16, 16) is None
