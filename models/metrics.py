"""Pixel, class and image metrics, accumulated over a test set.

Everything pixel-level derives from one confusion matrix over class indices (0 = background,
1..K = defect classes), summed over every test pixel as the seed paper does:

- binary (any defect vs background): TP = predicted defect on a defect pixel (any class),
  FP = predicted defect on background, FN = background predicted on a defect pixel;
- per class ``c``: TP = conf[c, c], FP = column c minus TP, FN = row c minus TP.

Precision, recall, F1 and IoU with an empty denominator are 0.0 (and a class with no ground
truth pixels is left out of the mean / std across classes).

Image level: an image is *flagged* when its thresholded any-defect map has a connected region
of at least ``min_area_px`` pixels. ``image_score`` gives the highest threshold (on a grid) at
which an image is still flagged, so a threshold sweep needs no re-inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
#: threshold grid of the sweeps (0.01 .. 0.99, then 0.995 and 0.999)
SWEEP = (*(round(0.01 * k, 2) for k in range(1, 100)), 0.995, 0.999)


@dataclass(frozen=True)
class Scores:
    """Precision, recall, F1, IoU of one binary decision, and its counts."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 0.0

    @property
    def iou(self) -> float:
        d = self.tp + self.fp + self.fn
        return self.tp / d if d else 0.0

    def as_dict(self) -> dict[str, float]:
        """The four scores by name."""
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, "iou": self.iou}


def confusion(gt: npt.NDArray[np.uint8], pred: npt.NDArray[np.uint8], n: int) -> I64:
    """(n, n) confusion matrix, rows = ground truth, columns = prediction."""
    idx = gt.astype(np.int64).ravel() * n + pred.astype(np.int64).ravel()
    return np.bincount(idx, minlength=n * n).reshape(n, n).astype(np.int64)


def binary_scores(conf: I64) -> Scores:
    """Any defect vs background from a class confusion matrix."""
    tp = int(conf[1:, 1:].sum())
    fp = int(conf[0, 1:].sum())
    fn = int(conf[1:, 0].sum())
    return Scores(tp, fp, fn)


def class_scores(conf: I64, c: int) -> Scores:
    """One class against all others from a class confusion matrix."""
    tp = int(conf[c, c])
    return Scores(tp, int(conf[:, c].sum()) - tp, int(conf[c, :].sum()) - tp)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (0, 0 for an empty list)."""
    if not values:
        return 0.0, 0.0
    m = sum(values) / len(values)
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def has_region(mask: npt.NDArray[np.bool_], min_area_px: int) -> bool:
    """True if ``mask`` has a connected region (8-connectivity) of >= ``min_area_px`` pixels."""
    if min_area_px <= 1:
        return bool(mask.any())
    if int(mask.sum()) < min_area_px:
        return False
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return bool(n > 1 and int(stats[1:, cv2.CC_STAT_AREA].max()) >= min_area_px)


def image_score(prob: F32, min_area_px: int, grid: tuple[float, ...] = SWEEP) -> float:
    """The highest grid threshold at which ``prob`` still has a region >= ``min_area_px``
    (0.0 if none). Monotone: a region at a higher threshold lies inside one at a lower one."""
    lo, hi = 0, len(grid) - 1
    if not has_region(prob >= grid[lo], min_area_px):
        return 0.0
    while lo < hi:  # invariant: flagged at grid[lo]
        mid = (lo + hi + 1) // 2
        if has_region(prob >= grid[mid], min_area_px):
            lo = mid
        else:
            hi = mid - 1
    return grid[lo]


def auroc(scores: npt.NDArray[np.float64], labels: npt.NDArray[np.bool_]) -> float:
    """Area under the ROC curve of ``scores`` for the positive ``labels`` (ties count half);
    0.5 when one side is empty."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def score_sweep(
    scores: npt.NDArray[np.float64], labels: npt.NDArray[np.bool_], max_points: int = 200
) -> list[dict[str, float]]:
    """Defect recall and false-reject rate at every distinct score used as a threshold
    (flagged = score >= threshold), thinned to at most ``max_points``; works for
    probabilities and logits alike."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels, bool)
    ts = np.unique(s)[::-1]
    if len(ts) > max_points:
        ts = ts[np.linspace(0, len(ts) - 1, max_points).round().astype(int)]
    out: list[dict[str, float]] = []
    for t in ts:
        f = s >= t
        out.append({
            "threshold": float(t),
            "defect_recall": float(f[y].mean()) if y.any() else 0.0,
            "false_reject_rate": float(f[~y].mean()) if (~y).any() else 0.0,
        })
    return out


@dataclass
class Accumulator:
    """Sums everything ``evaluate`` reports over a stream of images."""

    classes: list[str]
    bins: int = 100
    conf: I64 = field(init=False)
    pos_hist: I64 = field(init=False)
    neg_hist: I64 = field(init=False)
    image_scores: list[float] = field(default_factory=list)
    image_labels: list[int] = field(default_factory=list)  # 0 = defect-free, c = class c
    #: 0 = not flagged, c = dominant predicted class, K + 1 = flagged with no region drawn
    image_preds: list[int] = field(default_factory=list)
    image_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.classes) + 1
        self.conf = np.zeros((n, n), np.int64)
        self.pos_hist = np.zeros(self.bins, np.int64)
        self.neg_hist = np.zeros(self.bins, np.int64)

    def add(
        self,
        gt: npt.NDArray[np.uint8],
        pred: npt.NDArray[np.uint8],
        prob: F32,
        label: int,
        score: float,
        image_pred: int,
        name: str = "",
    ) -> None:
        """One image: ground-truth and predicted class maps, the any-defect probability map,
        the image label (0 = defect-free, else its class), the image score (see
        :func:`image_score`), the image decision at the operating point (0 = not flagged,
        else the predicted class; K + 1 = flagged, but no pixel reached a class threshold)
        and its name (for the list of errors)."""
        n = len(self.classes) + 1
        self.conf += confusion(gt, pred, n)
        b = np.clip((prob * self.bins).astype(np.int64), 0, self.bins - 1)
        positive = gt > 0
        self.pos_hist += np.bincount(b[positive], minlength=self.bins)
        self.neg_hist += np.bincount(b[~positive], minlength=self.bins)
        self.image_scores.append(float(score))
        self.image_labels.append(int(label))
        self.image_preds.append(int(image_pred))
        self.image_names.append(name)

    # ------------------------------------------------------------ summaries

    def pixel_pr_curve(self) -> list[dict[str, float]]:
        """Binary pixel precision / recall / F1 / IoU at each histogram-bin threshold."""
        tp_c = np.cumsum(self.pos_hist[::-1])[::-1]  # pixels with prob >= bin start
        fp_c = np.cumsum(self.neg_hist[::-1])[::-1]
        total_pos = int(self.pos_hist.sum())
        out: list[dict[str, float]] = []
        for k in range(1, self.bins):
            s = Scores(int(tp_c[k]), int(fp_c[k]), total_pos - int(tp_c[k]))
            out.append({"threshold": k / self.bins, **s.as_dict()})
        return out

    def image_sweep(self) -> list[dict[str, float]]:
        """Image defect recall and false-reject rate with each distinct image score as the
        threshold (see :func:`score_sweep`)."""
        labels = np.asarray(self.image_labels) > 0
        return score_sweep(np.asarray(self.image_scores, np.float64), labels)

    def image_confusion(self) -> I64:
        """(K+1, K+2) image-level confusion: rows = true label (0 = defect-free), columns =
        prediction (0 = not flagged, 1..K = the dominant predicted class, K+1 = flagged with
        no region drawn, e.g. by the image head alone)."""
        n = len(self.classes) + 1
        m = np.zeros((n, n + 1), np.int64)
        for t, p in zip(self.image_labels, self.image_preds, strict=True):
            m[t, p] += 1
        return m

    def image_errors(self) -> list[dict[str, object]]:
        """The images the operating point got wrong: defective ones it let pass (``missed``)
        and defect-free ones it rejected (``false reject``), each with its name, true class
        and part score; missed first, each kind by descending score."""
        names = ["defect-free", *self.classes]
        out: list[dict[str, object]] = []
        for name, t, p, score in zip(self.image_names, self.image_labels, self.image_preds,
                                     self.image_scores, strict=True):
            if (t > 0) != (p > 0):
                out.append({"image": name, "truth": names[t],
                            "kind": "missed" if t > 0 else "false reject", "score": score})
        out.sort(key=lambda e: (e["kind"] != "missed", -float(e["score"])))  # type: ignore[arg-type]
        return out

    def report(self) -> dict[str, object]:
        """The report dictionary with the public flat keys (``pixel.f1`` ...)."""
        out: dict[str, object] = {}
        for k, v in binary_scores(self.conf).as_dict().items():
            out[f"pixel.{k}"] = v
        b = binary_scores(self.conf)
        out["pixel.tp"], out["pixel.fp"], out["pixel.fn"] = b.tp, b.fp, b.fn
        per_class: dict[str, dict[str, float]] = {}
        present: list[dict[str, float]] = []
        for c, name in enumerate(self.classes, start=1):
            s = class_scores(self.conf, c).as_dict()
            per_class[name] = s
            if int(self.conf[c, :].sum()) > 0:
                present.append(s)
            for k, v in s.items():
                out[f"class.{name}.{k}"] = v
        for k in ("precision", "recall", "f1", "iou"):
            m, sd = mean_std([s[k] for s in present])
            out[f"class.mean.{k}"], out[f"class.std.{k}"] = m, sd
        labels = np.asarray(self.image_labels)
        flagged = np.asarray(self.image_preds) > 0
        defect, free = labels > 0, labels == 0
        out["image.defect_recall"] = float(flagged[defect].mean()) if defect.any() else 0.0
        out["image.false_reject_rate"] = float(flagged[free].mean()) if free.any() else 0.0
        out["image.auroc"] = auroc(np.asarray(self.image_scores, np.float64), defect)
        out["image.n_defective"] = int(defect.sum())
        out["image.n_defect_free"] = int(free.sum())
        for c, name in enumerate(self.classes, start=1):
            sel = labels == c
            out[f"image.defect_recall.{name}"] = float(flagged[sel].mean()) if sel.any() else 0.0
        return out
