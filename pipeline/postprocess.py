"""Probability maps -> class map, defect map and the list of defects.

On the device: per-class thresholds, the winning class per pixel, the region of interest, and
the downscaled defect map. On the host (only when some pixel is a defect): connected
components per class with a minimum area, and per component its area (px, and mm² when the
scale is known), box, centroid, mean and max score and an outline polygon.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from config.errors import PipelineError
from pipeline.types import Defect

#: Scores are quantised to this many steps when the defect map picks the strongest class.
_SCORE_STEPS = 4096


def defect_probabilities(probs: torch.Tensor, head: str) -> torch.Tensor:
    """Per-defect-class probabilities ``(K, H, W)`` from the network's ``(1, C, H, W)``.

    Softmax heads drop the background channel; sigmoid heads have none.
    """
    if probs.ndim != 4 or probs.shape[0] != 1:
        raise PipelineError(f"probabilities must be (1, C, H, W), got {tuple(probs.shape)}")
    return probs[0, 1:] if head == "softmax" else probs[0]


def classify(
    probs: torch.Tensor, thresholds: torch.Tensor, roi: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class map and score map from defect-class probabilities ``(K, H, W)``.

    A pixel is of class ``k + 1`` when ``probs[k] >= thresholds[k]`` and no other class passing
    its threshold is more probable there; 0 (background) when none passes, or outside ``roi``
    (bool ``(H, W)``). Returns (``uint8 (H, W)`` class map, ``float32 (H, W)`` score of that
    class, 0 on background).
    """
    if probs.shape[0] != thresholds.shape[0]:
        raise PipelineError(
            f"{probs.shape[0]} probability maps but {thresholds.shape[0]} thresholds"
        )
    if probs.shape[0] > 254:
        raise PipelineError("at most 254 defect classes fit a uint8 class map")
    passing = probs >= thresholds.view(-1, 1, 1).to(probs.dtype)
    masked = torch.where(passing, probs, torch.full_like(probs, -1.0))
    score, idx = masked.max(dim=0)
    hit = score >= 0
    if roi is not None:
        if roi.shape != hit.shape:
            raise PipelineError(
                f"region of interest {tuple(roi.shape)} does not fit the frame {tuple(hit.shape)}"
            )
        hit = hit & roi
    labels = torch.where(hit, idx + 1, torch.zeros_like(idx)).to(torch.uint8)
    scores = torch.where(hit, score, torch.zeros_like(score)).float()
    return labels, scores


def downscale_defect_map(labels: torch.Tensor, scores: torch.Tensor, factor: int) -> torch.Tensor:
    """The class map ``factor`` times smaller: each block shows its highest-scoring class.

    Small defects survive (a block with one defect pixel shows that defect). ``uint8``.
    """
    if factor == 1:
        return labels
    q = torch.round(scores.clamp(0, 1) * (_SCORE_STEPS - 1))
    key = torch.where(labels > 0, q * 256 + labels.float(), torch.zeros_like(q))
    pooled = F.max_pool2d(key[None, None], factor, stride=factor, ceil_mode=True)[0, 0]
    return torch.remainder(pooled, 256).to(torch.uint8)


def _outline(mask: npt.NDArray[np.uint8], ox: int, oy: int, max_points: int
             ) -> list[tuple[int, int]]:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    contour = max(contours, key=cv2.contourArea)
    eps = 0.5
    poly = cv2.approxPolyDP(contour, eps, True)
    while len(poly) > max_points:
        eps *= 2
        poly = cv2.approxPolyDP(contour, eps, True)
    pts = (poly.reshape(-1, 2) + np.array([ox, oy])).tolist()
    return [(int(x), int(y)) for x, y in pts]


def extract_defects(
    labels: npt.NDArray[np.uint8],
    scores: npt.NDArray[np.float32],
    *,
    camera: str,
    class_names: list[str],
    min_area_px: int,
    mm_per_px: float | None,
    max_outline_points: int = 64,
    max_outlines: int | None = None,
    origin: tuple[int, int] = (0, 0),
) -> list[Defect]:
    """Connected components (8-connected) of each class in ``labels`` -> defects, largest first.

    ``class_names[i]`` names class index ``i`` (0 = background). Components smaller than
    ``min_area_px`` are dropped. Only the ``max_outlines`` largest defects of each class get an
    outline polygon (all when ``None``): a noisy network can produce tens of thousands of
    components, and only the listed ones are ever drawn. ``origin`` (x, y) is where
    ``labels[0, 0]`` lies in the full frame (for crops); results are in full-frame pixels.
    """
    ox, oy = origin
    if labels.shape != scores.shape:
        raise PipelineError(f"class map {labels.shape} and score map {scores.shape} differ")
    defects: list[Defect] = []
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=len(class_names)))
    mm2 = mm_per_px * mm_per_px if mm_per_px else None
    for cls in present:
        if cls == 0:
            continue
        if cls >= len(class_names):
            raise PipelineError(f"class index {cls} but only {len(class_names)} classes")
        mask = (labels == cls).astype(np.uint8)
        n, cc, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
        areas = stats[:, cv2.CC_STAT_AREA]
        keep = [i for i in range(1, n) if areas[i] >= min_area_px]
        if not keep:
            continue
        flat_cc, flat_scores = cc.ravel(), scores.ravel()
        sums = np.bincount(flat_cc, weights=flat_scores, minlength=n)
        maxs = np.zeros(n, dtype=np.float32)
        np.maximum.at(maxs, flat_cc, flat_scores)
        keep.sort(key=lambda i: -int(areas[i]))
        name = class_names[cls]
        for rank, i in enumerate(keep):
            x, y, w, h = (int(v) for v in stats[i, :4])
            area = int(areas[i])
            outline: list[tuple[int, int]] = []
            if max_outlines is None or rank < max_outlines:
                crop = (cc[y:y + h, x:x + w] == i).astype(np.uint8)
                outline = _outline(crop, x + ox, y + oy, max_outline_points)
            defects.append(Defect(
                camera=camera,
                class_name=name,
                class_index=int(cls),
                area_px=area,
                area_mm2=float(area * mm2) if mm2 is not None else None,
                box=(x + ox, y + oy, w, h),
                centroid=(float(centroids[i][0]) + ox, float(centroids[i][1]) + oy),
                mean_score=float(sums[i] / area),
                max_score=float(maxs[i]),
                outline=outline,
            ))
    defects.sort(key=lambda d: (-d.area_px, d.class_index, d.box))
    return defects


@dataclass(frozen=True)
class Crop:
    """A part of the frame holding whole defects: rows ``y0:y1``, columns ``x0:x1``, and the
    pixels of it that belong to this region (``keep``, full resolution, bool)."""

    y0: int
    y1: int
    x0: int
    x1: int
    keep: npt.NDArray[np.bool_]


def defect_regions(
    defect_map: npt.NDArray[np.uint8], factor: int, height: int, width: int,
    max_regions: int = 64, max_share: float = 0.25,
) -> list[Crop] | None:
    """Regions of the full frame that together hold every defect pixel, each defect whole.

    The 8-connected groups of non-zero blocks of the downscaled ``defect_map`` (block = the
    ``factor`` x ``factor`` pixels it summarises): a connected set of defect pixels only covers
    connected blocks, so every defect lies inside exactly one group. Only these regions need to
    leave the device. ``None`` when there are more than ``max_regions`` groups or they cover
    more than ``max_share`` of the frame (then the whole frame is cheaper).
    """
    occupied = (defect_map > 0).astype(np.uint8)
    if occupied.mean() > max_share:
        return None
    n, cc, stats, _ = cv2.connectedComponentsWithStats(occupied, connectivity=8)
    if n - 1 > max_regions:
        return None
    regions = []
    for j in range(1, n):
        bx, by, bw, bh = (int(v) for v in stats[j, :4])
        y0, x0 = by * factor, bx * factor
        y1, x1 = min((by + bh) * factor, height), min((bx + bw) * factor, width)
        blocks = cc[by:by + bh, bx:bx + bw] == j
        keep = np.repeat(np.repeat(blocks, factor, axis=0), factor, axis=1)[:y1 - y0, :x1 - x0]
        regions.append(Crop(y0, y1, x0, x1, keep))
    return regions
