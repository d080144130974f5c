"""Thresholds, class maps, defect maps and connected components of known synthetic defects."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from config.errors import PipelineError
from pipeline.postprocess import (
    classify,
    defect_probabilities,
    downscale_defect_map,
    extract_defects,
    find_defects,
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


def _rounded(ds: list[Defect]) -> list[Defect]:
    out = [dataclasses.replace(d, centroid=(round(d.centroid[0], 9), round(d.centroid[1], 9)),
                               mean_score=round(d.mean_score, 9)) for d in ds]
    return sorted(out, key=lambda d: (-d.area_px, d.class_index, d.box))


def _find(labels: np.ndarray, scores: np.ndarray, **kw: object) -> tuple[list[Defect], int]:
    args: dict[str, object] = {"camera": "c", "class_names": NAMES, "min_area_px": 1,
                               "mm_per_px": 0.1, **kw}
    return find_defects(torch.from_numpy(labels), torch.from_numpy(scores),
                        **args)  # type: ignore[arg-type]


def _separated_defects() -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros((96, 128), np.uint8)
    labels[10:60, 10:14] = 2  # L shape: vertical bar ...
    labels[56:60, 10:60] = 2  # ... and its foot
    labels[30:33, 30:33] = 1  # a speck of another class inside the L's bounding box
    labels[80:90, 100:127] = 1
    cv2.circle(labels, (100, 30), 9, 2, -1)
    labels[2, 120] = 2  # 1 px, below min area 2
    rng = np.random.default_rng(0)
    scores = np.where(labels > 0, rng.uniform(0.5, 1.0, labels.shape), 0).astype(np.float32)
    return labels, scores


@pytest.mark.parametrize("method", ["sparse", "dense"])
def test_regions_equal_exact_components_when_defects_are_apart(method: str) -> None:
    """Defects more than two blocks apart come back exactly as the full-resolution components
    give them: area, box, centroid, scores, mm² and outline (an L shape enclosing a speck of
    another class in its box, a disc, a bar; a 1-px speck below min area is dropped), with
    either way of summing blocks and any block size (frames not a multiple of it too)."""
    labels, scores = _separated_defects()
    kw = {"camera": "c", "class_names": NAMES, "min_area_px": 2, "mm_per_px": 0.1}
    exact = extract_defects(labels, scores, **kw)  # type: ignore[arg-type]
    found, count = _find(labels, scores, min_area_px=2, method=method)
    assert count == 4 == len(found)
    assert _rounded(found) == _rounded(exact)
    for block in (1, 3, 8):
        assert _rounded(_find(labels, scores, min_area_px=2, block=block,
                              method=method)[0]) == _rounded(exact)


@pytest.mark.parametrize("method", ["sparse", "dense"])
def test_region_areas_are_exact_when_components_merge(method: str) -> None:
    """Specks closer than a block merge into one region of their class whose area, box,
    centroid and scores are exactly those of all its pixels (no pixel lost or counted twice);
    a cluster of the other class interleaved with it stays a region of its own."""
    labels = np.zeros((80, 96), np.uint8)
    rng = np.random.default_rng(3)
    for y in range(10, 34, 3):  # a 24 x 24 cluster of 1-px Blowhole specks, 3 px apart
        for x in range(20, 44, 3):
            labels[y, x] = 1
    labels[11:33:4, 22:43:4] = 2  # Crack specks between them, 4 px apart
    labels[60:63, 70:90:2] = 1  # a second Blowhole cluster, far away
    scores = np.where(labels > 0, rng.uniform(0.5, 1.0, labels.shape), 0).astype(np.float32)
    exact = extract_defects(labels, scores, camera="c", class_names=NAMES, min_area_px=1,
                            mm_per_px=0.1)
    assert len(exact) > 60 + 30 + 10  # every speck (and short bar) its own component
    found, count = _find(labels, scores, block=4, method=method)
    assert count == 3
    by_box = {d.box: d for d in found}
    for cls, (y0, y1, x0, x1) in ((1, (0, 40, 0, 50)), (2, (0, 40, 0, 50)),
                                   (1, (50, 80, 60, 96))):
        sub = np.zeros_like(labels)
        sub[y0:y1, x0:x1] = labels[y0:y1, x0:x1]
        ys, xs = np.nonzero(sub == cls)
        box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
               int(ys.max() - ys.min() + 1))
        d = by_box[box]
        assert d.class_index == cls and d.area_px == len(ys)
        assert d.area_mm2 == pytest.approx(len(ys) * 0.01)
        assert d.centroid == pytest.approx((xs.mean(), ys.mean()))
        assert d.mean_score == pytest.approx(float(scores[ys, xs].mean()))
        assert d.max_score == float(scores[ys, xs].max())


@pytest.mark.parametrize("method", ["sparse", "dense"])
def test_noise_frame_costs_few_regions_not_millions_of_components(method: str) -> None:
    """A noise-like map (uniform noise per class, thresholded at 0.5: one component per few
    pixels) becomes a handful of regions, one per class, covering every pixel, instead of
    thousands of defects; the work after labelling the blocks is bounded by max_regions."""
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(2, 240, 320, generator=g)
    labels, scores = classify(probs, torch.tensor([0.5, 0.5]))
    exact = extract_defects(labels.numpy(), scores.numpy(), camera="c", class_names=NAMES,
                            min_area_px=1, mm_per_px=None)
    assert len(exact) > 3000  # what the host components would have to walk through
    found, count = find_defects(labels, scores, camera="c", class_names=NAMES, min_area_px=1,
                                mm_per_px=None, max_regions=5,
                                method=method)  # type: ignore[arg-type]
    assert count <= 4 and len(found) == count
    assert sum(d.area_px for d in found) == int((labels > 0).sum())


@pytest.mark.parametrize("method", ["sparse", "dense"])
def test_more_regions_than_the_cap_are_counted_and_the_largest_reported(method: str) -> None:
    """Block-level noise (isolated specks a few blocks apart): every region is counted, only
    the max_regions largest come back, largest first, and regions below min area are neither
    counted nor reported."""
    labels = np.zeros((120, 160), np.uint8)
    sizes = {}
    for i, (y, x) in enumerate((y, x) for y in range(2, 120, 12) for x in range(2, 160, 12)):
        side = 1 + i % 4  # 1x1 .. 4x4 squares
        labels[y:y + side, x:x + side] = 1 + i % 2
        sizes[(x, y)] = side * side
    scores = (labels > 0).astype(np.float32)
    found, count = _find(labels, scores, min_area_px=2, max_regions=7, method=method)
    assert count == sum(1 for a in sizes.values() if a >= 2)
    assert len(found) == 7
    assert [d.area_px for d in found] == [16] * 7
    assert found == sorted(found, key=lambda d: (-d.area_px, d.class_index, d.box))


def test_outlines_past_the_budget_come_from_the_block_map() -> None:
    """With no budget for full-resolution crops the outline is traced on the block map: it
    stays within a block of the exact outline's extent."""
    labels = np.zeros((100, 100), np.uint8)
    labels[21:67, 13:58] = 1
    scores = labels.astype(np.float32)
    (exact,), _ = _find(labels, scores)
    (coarse,), _ = _find(labels, scores, outline_budget_px=0)
    assert coarse.area_px == exact.area_px and coarse.box == exact.box
    xs, ys = [p[0] for p in coarse.outline], [p[1] for p in coarse.outline]
    assert abs(min(xs) - 13) < 4 and abs(max(xs) - 57) < 4
    assert abs(min(ys) - 21) < 4 and abs(max(ys) - 66) < 4


def test_find_defects_edge_cases() -> None:
    """An empty map gives nothing; mismatched maps and a foreign class index are errors."""
    assert _find(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.float32)) == ([], 0)
    with pytest.raises(PipelineError, match="same"):
        _find(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.float32))
    bad = np.zeros((8, 8), np.uint8)
    bad[1, 1] = 7
    with pytest.raises(PipelineError, match="class index 7"):
        _find(bad, bad.astype(np.float32))


def test_dense_and_sparse_block_sums_agree_on_random_maps() -> None:
    """The GPU way (dense passes) and the CPU way (scatter over defect pixels) give the same
    defects, outlines included, on random blobby maps of sizes that are not block multiples."""
    rng = np.random.default_rng(7)
    for h, w in ((37, 53), (64, 64), (101, 30)):
        labels = np.zeros((h, w), np.uint8)
        for _ in range(12):
            cv2.circle(labels, (int(rng.integers(0, w)), int(rng.integers(0, h))),
                       int(rng.integers(0, 5)), int(rng.integers(1, 3)), -1)
        scores = np.where(labels > 0, rng.uniform(0.3, 1.0, labels.shape), 0)
        scores = scores.astype(np.float32)
        for block in (2, 4, 5):
            a = _find(labels, scores, block=block, method="sparse")
            b = _find(labels, scores, block=block, method="dense")
            assert a[1] == b[1]
            assert _rounded(a[0]) == _rounded(b[0])
