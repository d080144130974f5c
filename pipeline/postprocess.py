"""Probability maps -> class map, defect map and the list of defects, at a bounded cost.

On the device: per-class thresholds, the winning class per pixel, the region of interest, the
downscaled defect map, and the statistics of every *region*. A region is an 8-connected group
of ``block`` x ``block`` blocks holding pixels of one class (:func:`find_defects`): per class
and block, the pixel count, score sum and max, coordinate sums and extremes are computed on the
device; the occupied blocks (a map ``block``² times smaller than the frame, whatever it holds)
are labelled on the host; the blocks' figures are then reduced per region on the device, exact
to the pixel. Only the counts, the statistics of the ``max_regions`` largest regions and the
pixels needed for their outlines come to the host, so the cost is bounded by the frame size,
not by the number of components: a noise-like frame with millions of specks costs about what a
frame with one large defect does.

Where defects are more than ``2 * block`` px apart (the ordinary case), a region is exactly one
8-connected component and its figures equal :func:`extract_defects`' (the host reference, exact
components at full resolution, kept for tests and offline use); defects closer than that may be
reported as one region of their class.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from config.errors import PipelineError
from pipeline.types import Defect

#: Scores are quantised to this many steps when the defect map picks the strongest class.
_SCORE_STEPS = 4096
#: Full-resolution pixels copied to the host for outlines per frame, at most; larger regions
#: (and those past the budget) are outlined on the block map instead.
OUTLINE_BUDGET_PX = 1 << 20
#: Blocks examined for block-resolution outlines per frame, at most; past it, a region's
#: outline is its box.
OUTLINE_BUDGET_BLOCKS = 1 << 22
#: On CUDA, reductions over blocks are spread over up to this many slots per region (then
#: reduced), so that a region of a million blocks does not serialise a million atomics.
_LANES = 64


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
    if roi is not None and roi.shape != probs.shape[1:]:
        raise PipelineError(
            f"region of interest {tuple(roi.shape)} does not fit the frame "
            f"{tuple(probs.shape[1:])}"
        )
    # One class at a time (contiguous element-wise passes; a max over the class dimension is a
    # strided reduction, three times slower on the CPU). Ties go to the lower class, as max().
    thr = thresholds.to(device=probs.device, dtype=probs.dtype)  # indexed: no host sync
    score = torch.full(probs.shape[1:], -1.0, dtype=probs.dtype, device=probs.device)
    labels = torch.zeros(probs.shape[1:], dtype=torch.uint8, device=probs.device)
    for k in range(probs.shape[0]):
        pk = probs[k]
        better = (pk >= thr[k]) & (pk > score)
        if roi is not None:
            better &= roi
        score = torch.where(better, pk, score)
        labels.masked_fill_(better, k + 1)
    return labels, score.clamp_min(0).float()


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
    pts = _contour(mask, max_points)
    if pts is None:
        return []
    return [(int(x) + ox, int(y) + oy) for x, y in pts]


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




def _contour(mask: npt.NDArray[np.uint8], max_points: int) -> npt.NDArray[np.int64] | None:
    """The largest external contour of ``mask``, simplified to at most ``max_points``."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    contour = max(contours, key=cv2.contourArea)
    eps = 0.5
    poly = cv2.approxPolyDP(contour, eps, True)
    while len(poly) > max_points:
        eps *= 2
        poly = cv2.approxPolyDP(contour, eps, True)
    return np.asarray(poly.reshape(-1, 2), dtype=np.int64)


_pinned: dict[tuple[str, tuple[int, ...], torch.dtype], torch.Tensor] = {}
_pinned_lock = threading.Lock()


def _host_buffer(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
                 ) -> torch.Tensor:
    """A host tensor for transfers to or from ``device``: page-locked (and reused) for CUDA,
    so that a copy runs at full speed; a fresh one for the CPU. Callers use it under the
    Inspector's lock and synchronise before the next call."""
    if device.type != "cuda":
        return torch.empty(shape, dtype=dtype)
    key = (str(device), shape, dtype)
    with _pinned_lock:
        buf = _pinned.get(key)
        if buf is None:
            if len(_pinned) >= 8:
                _pinned.pop(next(iter(_pinned)))
            buf = torch.empty(shape, dtype=dtype, pin_memory=True)
            _pinned[key] = buf
        return buf


def _scatter(values: torch.Tensor, index: torch.Tensor, n: int, how: str, init: float
             ) -> torch.Tensor:
    """``out[index[i]] (how)= values[i]`` over ``n`` outputs (``sum``, ``amin``, ``amax``).

    On CUDA each output gets up to :data:`_LANES` slots (chosen by position), reduced
    afterwards, so that a region of a million blocks does not funnel a million atomics into
    one address.
    """
    lanes = 1
    if values.is_cuda:
        while lanes < _LANES and n * lanes * 2 <= (1 << 24):
            lanes *= 2
    if lanes > 1:
        pos = torch.arange(index.numel(), device=index.device) & (lanes - 1)
        index = index * lanes + pos
    out = torch.full((n * lanes,), init, dtype=values.dtype, device=values.device)
    out.scatter_reduce_(0, index, values, how, include_self=True)
    if lanes == 1:
        return out
    grid = out.view(n, lanes)
    if how == "sum":
        return grid.sum(dim=1)
    return grid.amax(dim=1) if how == "amax" else grid.amin(dim=1)


_STATS = ("area", "ssum", "smax", "sx", "sy", "x0", "x1", "y0", "y1")


def _dense_occupancy(lab: torch.Tensor, k: int, f: int) -> torch.Tensor:
    """``(k, H/f, W/f)`` bool: which blocks hold pixels of class 1..k (``lab`` padded)."""
    hb, wb = lab.shape[0] // f, lab.shape[1] // f
    return torch.stack([(lab == c).view(hb, f, wb, f).any(dim=3).any(dim=1)
                        for c in range(1, k + 1)])


def _dense_block_stats(lab: torch.Tensor, sc: torch.Tensor, present: list[int], f: int,
                       big: int) -> dict[str, torch.Tensor]:
    """Per (present class, block) statistics from dense passes over the padded frame (the
    GPU way: no atomics, a dozen bandwidth-bound passes per class). Each ``(P * nb,)``."""
    dev = lab.device
    hb, wb = lab.shape[0] // f, lab.shape[1] // f
    colx = (torch.arange(wb, device=dev) * f).view(wb, 1) + torch.arange(f, device=dev)
    rowy = (torch.arange(hb, device=dev) * f).view(hb, 1, 1) + \
        torch.arange(f, device=dev).view(1, f, 1)
    cols: dict[str, list[torch.Tensor]] = {n: [] for n in _STATS}
    for c in present:
        m = lab == c + 1
        mv = m.view(hb, f, wb, f)
        colcnt = mv.sum(dim=1, dtype=torch.int32)  # (hb, wb, f): pixels per in-block column
        rowcnt = mv.sum(dim=3, dtype=torch.int32)  # (hb, f, wb): pixels per in-block row
        sv = torch.where(m, sc, 0.0).view(hb, f, wb, f)
        cols["area"].append(colcnt.sum(dim=2, dtype=torch.int64))
        cols["ssum"].append(sv.sum(dim=(1, 3), dtype=torch.float64))
        cols["smax"].append(sv.amax(dim=(1, 3)))
        cols["sx"].append((colcnt * colx).sum(dim=2, dtype=torch.int64))
        cols["sy"].append((rowcnt * rowy).sum(dim=1, dtype=torch.int64))
        cols["x0"].append(torch.where(colcnt > 0, colx, big).amin(dim=2))
        cols["x1"].append(torch.where(colcnt > 0, colx, -1).amax(dim=2))
        cols["y0"].append(torch.where(rowcnt > 0, rowy, big).amin(dim=1))
        cols["y1"].append(torch.where(rowcnt > 0, rowy, -1).amax(dim=1))
    return {n: torch.stack(v).reshape(-1) for n, v in cols.items()}


@dataclass(frozen=True)
class _Pixels:
    """The defect pixels of a frame (the CPU way): (class, block) key, x, y, score."""

    key: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    score: torch.Tensor


def _sparse_pixels(labels: torch.Tensor, scores: torch.Tensor, k: int, f: int
                   ) -> tuple[torch.Tensor, _Pixels]:
    """Occupancy ``(k, hb, wb)`` and the defect pixels, found with one ``nonzero`` (nothing
    is spent on background)."""
    h, w = int(labels.shape[0]), int(labels.shape[1])
    hb, wb = -(-h // f), -(-w // f)
    flat = labels.reshape(-1)
    pix = torch.nonzero(flat).squeeze(1)
    y = pix // w
    x = pix - y * w
    key = (flat[pix].long() - 1) * (hb * wb) + (y // f) * wb + x // f
    occ = torch.bincount(key, minlength=k * hb * wb) > 0
    return occ.view(k, hb, wb), _Pixels(key, x, y, scores.reshape(-1)[pix].float())


def _sparse_region_stats(px: _Pixels, table: torch.Tensor, r: int, big: int
                         ) -> dict[str, torch.Tensor]:
    """Per-region statistics straight from the defect pixels: one sequential scatter each
    (``table``: region id per (class, block), ``(k * nb,)``)."""
    rid = table[px.key]

    def extreme(v: torch.Tensor, how: str, init: int) -> torch.Tensor:
        return torch.full((r,), init, dtype=v.dtype).scatter_reduce_(0, rid, v, how)

    return {
        "area": torch.bincount(rid, minlength=r),
        "ssum": torch.bincount(rid, weights=px.score.double(), minlength=r),
        "smax": torch.zeros(r).scatter_reduce_(0, rid, px.score, "amax"),
        "sx": torch.zeros(r, dtype=torch.int64).index_add_(0, rid, px.x),
        "sy": torch.zeros(r, dtype=torch.int64).index_add_(0, rid, px.y),
        "x0": extreme(px.x, "amin", big), "x1": extreme(px.x, "amax", -1),
        "y0": extreme(px.y, "amin", big), "y1": extreme(px.y, "amax", -1),
    }


def _dense_region_stats(lab: torch.Tensor, sc: torch.Tensor, present: list[int], f: int,
                        big: int, tid: torch.Tensor, r: int) -> dict[str, torch.Tensor]:
    """Per-region statistics from the per-(class, block) ones of the occupied blocks
    (``tid``: region id per (present class, block))."""
    blk = _dense_block_stats(lab, sc, present, f, big)
    sel = torch.nonzero(tid).squeeze(1)
    tid = tid[sel]
    how = {"area": ("sum", 0), "ssum": ("sum", 0), "smax": ("amax", 0), "sx": ("sum", 0),
           "sy": ("sum", 0), "x0": ("amin", big), "x1": ("amax", -1), "y0": ("amin", big),
           "y1": ("amax", -1)}
    return {n: _scatter(blk[n][sel], tid, r, op, init) for n, (op, init) in how.items()}


def find_defects(
    labels: torch.Tensor,
    scores: torch.Tensor,
    *,
    camera: str,
    class_names: list[str],
    min_area_px: int,
    mm_per_px: float | None,
    block: int = 4,
    max_regions: int = 100,
    max_outline_points: int = 64,
    outline_budget_px: int = OUTLINE_BUDGET_PX,
    method: Literal["auto", "dense", "sparse"] = "auto",
) -> tuple[list[Defect], int]:
    """Regions of ``labels`` (``uint8 (H, W)`` on any device) -> (defects, regions found).

    A region is an 8-connected group of ``block`` x ``block`` blocks containing pixels of one
    class, and holds exactly those pixels: every 8-connected component of a class lies inside
    one region, and components whose pixels are all at least ``2 * block`` px apart (in x or
    y) are in different regions. Regions smaller than ``min_area_px`` (pixels, exact) are
    dropped; the rest are counted (the second value), and the ``max_regions`` largest become
    :class:`Defect` s (largest first) with exact area, box, centroid, mean and max score.
    Outlines: from the full-resolution pixels while ``outline_budget_px`` lasts (largest
    regions first; a region whose box is larger than what is left is skipped), else from the
    block map (vertices at block centres).

    Cost, whatever the number of components: per-block statistics of each class (``dense``:
    a dozen passes over the frame per class present, the default on CUDA; ``sparse``: one
    scatter per statistic over the defect pixels, the default on the CPU), a connected-component
    labelling of a map ``block``² times smaller on the host, reductions over blocks, and work
    proportional to ``max_regions`` (and the outline budget).
    """
    if labels.ndim != 2 or labels.shape != scores.shape:
        raise PipelineError(
            f"class map {tuple(labels.shape)} and score map {tuple(scores.shape)} must be the "
            "same (H, W)"
        )
    if block < 1 or max_regions < 1:
        raise PipelineError(f"block ({block}) and max_regions ({max_regions}) must be >= 1")
    k = len(class_names) - 1
    dev = labels.device
    dense = method == "dense" or (method == "auto" and dev.type == "cuda")
    h, w = int(labels.shape[0]), int(labels.shape[1])
    f = block
    hb, wb = -(-h // f), -(-w // f)
    big = max(h, w) + 1
    top_class = int(labels.max())
    if top_class == 0:
        return [], 0
    if top_class > k:
        raise PipelineError(f"class index {top_class} but only {len(class_names)} classes")
    lab, sc = labels, scores.float()
    pixels: _Pixels | None = None
    if dense:
        if (hb * f, wb * f) != (h, w):
            lab = F.pad(labels, (0, wb * f - w, 0, hb * f - h))
            sc = F.pad(sc, (0, wb * f - w, 0, hb * f - h))
        occ_dev = _dense_occupancy(lab, k, f)
    else:
        occ_dev, pixels = _sparse_pixels(labels, sc, k, f)
    # Which blocks hold which class: one transfer of a map block² times smaller.
    occ_t = _host_buffer((k, hb, wb), torch.bool, dev)
    occ_t.copy_(occ_dev)
    occ = occ_t.numpy().view(np.uint8)
    present = [c for c in range(k) if occ[c].any()]
    # Label each present class's blocks on the host: regions get ids 1..r-1 across classes.
    labelled: list[npt.NDArray[np.int32]] = []
    region_class = [0]
    for c in present:
        n, cc = cv2.connectedComponents(occ[c], connectivity=8, ltype=cv2.CV_32S)
        cc[cc > 0] += len(region_class) - 1
        labelled.append(cc)
        region_class += [c + 1] * (n - 1)
    r = len(region_class)
    if pixels is not None:
        full = np.zeros((k, hb, wb), np.int64)
        for i, c in enumerate(present):
            full[c] = labelled[i]
        reg = _sparse_region_stats(pixels, torch.from_numpy(full.reshape(-1)), r, big)
    else:
        tdtype = torch.int16 if r < (1 << 15) else torch.int32
        table_t = _host_buffer((len(present), hb, wb), tdtype, dev)
        table = table_t.numpy()
        for i, cc in enumerate(labelled):
            table[i] = cc
        tid = table_t.to(dev, non_blocking=True).reshape(-1).long()
        reg = _dense_region_stats(lab, sc, present, f, big, tid, r)
    area = reg["area"]
    valid = area >= min_area_px
    valid[0] = False
    found = int(valid.sum())
    n_rep = min(found, max_regions)
    if n_rep == 0:
        return [], found
    # Largest first; ties broken by region id so that the choice is deterministic.
    rank = torch.where(valid, area * r + (r - 1 - torch.arange(r, device=dev)), -1)
    top = torch.topk(rank, n_rep).indices
    stats = torch.stack([top.double(), area[top].double()] + [
        reg[n][top].double() for n in ("ssum", "smax", "sx", "sy", "x0", "x1", "y0", "y1")
    ]).cpu().numpy()
    ids = stats[0].astype(np.int64)
    boxes = stats[6:].astype(np.int64).T  # x0, x1, y0, y1 inclusive
    planes = {c + 1: labelled[i] for i, c in enumerate(present)}
    outlines = _region_outlines(labels, planes, region_class, ids, boxes, f,
                                max_outline_points, outline_budget_px)
    mm2 = mm_per_px * mm_per_px if mm_per_px else None
    defects = []
    for j in range(n_rep):
        a = int(stats[1, j])
        x0, x1, y0, y1 = (int(v) for v in boxes[j])
        c = region_class[int(ids[j])]
        defects.append(Defect(
            camera=camera, class_name=class_names[c], class_index=c, area_px=a,
            area_mm2=float(a * mm2) if mm2 is not None else None,
            box=(x0, y0, x1 - x0 + 1, y1 - y0 + 1),
            centroid=(float(stats[4, j] / a), float(stats[5, j] / a)),
            mean_score=float(stats[2, j] / a), max_score=float(np.float32(stats[3, j])),
            outline=outlines[j],
        ))
    defects.sort(key=lambda d: (-d.area_px, d.class_index, d.box))
    return defects, found


def _region_outlines(
    labels: torch.Tensor, planes: dict[int, npt.NDArray[np.int32]], region_class: list[int],
    ids: npt.NDArray[np.int64], boxes: npt.NDArray[np.int64], block: int, max_points: int,
    budget_px: int,
) -> list[list[tuple[int, int]]]:
    """Outline polygons (full-frame px) of the reported regions, largest first.

    Full-resolution crops of the regions that fit the pixel budget are copied to the host in
    one transfer; the others are outlined on the block map (vertices at block centres), and
    past :data:`OUTLINE_BUDGET_BLOCKS` a region's outline is its box.
    """
    h, w = int(labels.shape[0]), int(labels.shape[1])
    full: list[int] = []
    left = budget_px
    for j, (x0, x1, y0, y1) in enumerate(boxes):
        size = int((x1 - x0 + 1) * (y1 - y0 + 1))
        if size <= left:
            full.append(j)
            left -= size
    crops: dict[int, npt.NDArray[np.uint8]] = {}
    if full:
        if labels.device.type == "cpu":
            host = labels.numpy()
            for j in full:
                x0, x1, y0, y1 = (int(v) for v in boxes[j])
                crops[j] = host[y0:y1 + 1, x0:x1 + 1]
        else:
            parts = [labels[int(boxes[j][2]):int(boxes[j][3]) + 1,
                            int(boxes[j][0]):int(boxes[j][1]) + 1].reshape(-1) for j in full]
            flat = torch.cat(parts).cpu().numpy()
            at = 0
            for j in full:
                x0, x1, y0, y1 = (int(v) for v in boxes[j])
                n = (x1 - x0 + 1) * (y1 - y0 + 1)
                crops[j] = flat[at:at + n].reshape(y1 - y0 + 1, x1 - x0 + 1)
                at += n
    blocks_left = OUTLINE_BUDGET_BLOCKS
    out: list[list[tuple[int, int]]] = []
    for j, (x0, x1, y0, y1) in enumerate(boxes):
        g = int(ids[j])
        c = region_class[g]
        plane = planes[c]
        pts: npt.NDArray[np.int64] | None
        if j in crops:
            ys = np.arange(y0, y1 + 1) // block
            xs = np.arange(x0, x1 + 1) // block
            mask = (crops[j] == c) & (plane[ys[:, None], xs[None, :]] == g)
            pts = _contour(mask.astype(np.uint8), max_points)
            if pts is not None:
                pts = pts + np.array([x0, y0])
        else:
            by0, by1, bx0, bx1 = y0 // block, y1 // block, x0 // block, x1 // block
            size = int((by1 - by0 + 1) * (bx1 - bx0 + 1))
            pts = None
            if size <= blocks_left:
                blocks_left -= size
                mask = (plane[by0:by1 + 1, bx0:bx1 + 1] == g).astype(np.uint8)
                pts = _contour(mask, max_points)
                if pts is not None:
                    pts = (pts + np.array([bx0, by0])) * block + (block - 1) // 2
                    pts = np.minimum(pts, np.array([w - 1, h - 1]))
            if pts is None:
                pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        out.append([] if pts is None else [(int(a), int(b)) for a, b in pts])
    return out
