"""Qualify a checkpoint on an annotated dataset: ``report.json``, ``report.md`` and charts.

The model's outputs come from a :class:`models.scoring.Scorer`: ``station evaluate`` passes
one that runs the station's own ``pipeline.Inspector`` (the tiles, blending and thresholds of
the booth); :class:`models.scoring.RuntimeScorer` runs whole images through
:mod:`models.runtime`. The decision is the checkpoint's operating point
(:mod:`models.operating_point`): per-class pixel thresholds make the class map the pixel
figures are counted on; the point's rule (regions of at least a minimum area per class, the
image head's score, or either) flags images.

Public report keys (flat, see :meth:`models.metrics.Accumulator.report`): ``pixel.precision``,
``pixel.recall``, ``pixel.f1``, ``pixel.iou``, ``class.<name>.<metric>``,
``class.mean.<metric>``, ``class.std.<metric>``, ``image.defect_recall``,
``image.false_reject_rate``, ``image.auroc``. The image sweep ranks images by the part score
of the rule (the head's logit, else the largest region's share of its minimum area).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import structlog

from models.data import Dataset
from models.metrics import Accumulator
from models.operating_point import ImageRecord, OperatingPoint, flagged
from models.plots import confusion_chart, image_sheet, line_chart
from models.runtime import class_map
from models.scoring import Scorer

log = structlog.get_logger(__name__)
F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

#: At most this many wrongly decided images are drawn in ``errors.png``.
MAX_ERROR_THUMBS = 48
#: Height of each of them there [px].
THUMB_HEIGHT = 150


@dataclass(frozen=True)
class ErrorThumb:
    """One wrongly decided image as drawn in ``errors.png``: the image, the true defect
    outlined in green, what the model drew in red, and a caption."""

    image: U8  # BGR
    caption: str


def error_thumb(image: U8, truth: U8, pred: U8, caption: str) -> ErrorThumb:
    """A thumbnail of ``image`` (grey) with the outlines of ``truth`` (green) and ``pred``
    (red) class maps, scaled to :data:`THUMB_HEIGHT`."""
    bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    for mask, colour in ((truth, (0, 170, 0)), (pred, (0, 0, 230))):
        contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(bgr, contours, -1, colour, max(1, image.shape[0] // THUMB_HEIGHT))
    scale = THUMB_HEIGHT / image.shape[0]
    width = max(1, min(4 * THUMB_HEIGHT, round(image.shape[1] * scale)))
    thumb = cv2.resize(bgr, (width, THUMB_HEIGHT), interpolation=cv2.INTER_AREA)
    return ErrorThumb(np.ascontiguousarray(thumb), caption)


#: The headline figures of a report (a public interface: the keys of report.json).
HEADLINE_KEYS: tuple[str, ...] = (
    "pixel.precision",
    "pixel.recall",
    "pixel.f1",
    "pixel.iou",
    "class.mean.f1",
    "image.defect_recall",
    "image.false_reject_rate",
)


def part_score(op: OperatingPoint, record: ImageRecord) -> float:
    """A score that ranks images the way ``op``'s rule flags them: the head's logit for
    ``image_head``; for ``segmentation`` the largest ratio of a region to its class's minimum
    area (>= 1 flags); for ``either`` the larger of the two, each measured against its own
    threshold (>= 0 flags: log-ratio of the area, head logit minus its threshold)."""
    seg = max((record.areas.get(c, 0) / a for c, a in op.min_area_px.items()), default=0.0)
    if op.rule == "segmentation" or record.head is None or op.head_threshold is None:
        return float(seg)
    if op.rule == "image_head":
        return float(record.head)
    seg_log = float(np.log(seg)) if seg > 0 else -1e6
    return max(seg_log, float(record.head - op.head_threshold))


def map_classes(ds: Dataset, model_classes: Sequence[str]) -> list[int]:
    """Dataset class index (1..) -> model class index; a binary model maps all to 1."""
    if len(model_classes) == 1:
        return [0] + [1] * len(ds.classes)
    out = [0]
    for name in ds.classes:
        out.append(list(model_classes).index(name) + 1 if name in model_classes else 0)
    return out


def image_label(
    gt: npt.NDArray[np.uint8], sample_label: str, ds_classes: Sequence[str],
    mapping: npt.NDArray[np.uint8], n_classes: int,
) -> int:
    """The image's true class index (0 = defect-free): the commonest defect class of its
    mask; an image whose mask is empty but whose sample names a defect class (a
    ``folder-classes`` image in a defect folder with an empty mask) is that class, as the
    operating point's choice counts it too."""
    if gt.any():
        return int(np.bincount(gt.ravel(), minlength=n_classes + 1)[1:].argmax()) + 1
    if sample_label and sample_label in ds_classes:
        return int(mapping[list(ds_classes).index(sample_label) + 1]) or 1
    return 0


def evaluate(
    scorer: Scorer,
    classes: Sequence[str],
    op: OperatingPoint,
    ds: Dataset,
    indices: Sequence[int] | None = None,
    progress: bool = False,
    errors: list[ErrorThumb] | None = None,
) -> Accumulator:
    """Run the scorer over ``ds`` (or the chosen indices) and accumulate the metrics at
    ``op``. ``errors``, when given, receives a thumbnail of each of the first
    :data:`MAX_ERROR_THUMBS` wrongly decided images (for ``errors.png``)."""
    thresholds = {c: op.pixel_thresholds[c] for c in classes}
    ths = [thresholds[c] for c in classes]
    mapping = np.asarray(map_classes(ds, classes), np.uint8)
    acc = Accumulator(list(classes))
    chosen = list(range(len(ds))) if indices is None else list(indices)
    for k, i in enumerate(chosen):
        image, mask = ds.load(i, cache=False)
        gt = mapping[mask]
        probs, head = scorer.probabilities(image)
        pred = class_map(probs, ths)
        record = ImageRecord(scorer.largest_regions(probs, thresholds), head,
                             ds.samples[i].label)
        label = image_label(gt, ds.samples[i].label, ds.classes, mapping, len(classes))
        image_pred = 0
        if flagged(op, record):
            counts = np.bincount(pred.ravel(), minlength=len(classes) + 1)[1:]
            image_pred = int(counts.argmax()) + 1 if counts.any() else len(classes) + 1
        score = part_score(op, record)
        name = ds.samples[i].name
        acc.add(gt, pred, probs.max(axis=0), label, score, image_pred, name)
        if errors is not None and (label > 0) != (image_pred > 0) \
                and len(errors) < MAX_ERROR_THUMBS:
            truth = (["defect-free", *classes])[label]
            kind = "missed" if label else "false reject"
            errors.append(error_thumb(image, gt, pred, f"{kind}: {name}\n{truth}, "
                                                       f"score {score:.2f}"))
        if progress and (k + 1) % 50 == 0:
            log.info("evaluate.progress", done=k + 1, total=len(chosen))
    return acc


def _md_table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def write_report(
    acc: Accumulator, out: Path, info: dict[str, Any], errors: Sequence[ErrorThumb] = (),
) -> dict[str, Any]:
    """Write report.json, report.md, pr_curve.png, image_sweep.png, confusion_matrix.json/png
    (pixel and image level) and errors.png (``errors``' thumbnails) into ``out``; return the
    report dict."""
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = dict(acc.report())
    curve = acc.pixel_pr_curve()
    sweep = acc.image_sweep()
    names = ["background", *acc.classes]
    image_names = ["defect-free", *acc.classes]
    conf_doc = {
        "pixel": {"rows_truth": names, "cols_prediction": names, "matrix": acc.conf.tolist()},
        "image": {
            "rows_truth": image_names,
            "cols_prediction": ["not flagged", *acc.classes, "no region"],
            "matrix": acc.image_confusion().tolist(),
        },
    }
    (out / "confusion_matrix.json").write_text(json.dumps(conf_doc, indent=2))
    confusion_chart(
        acc.conf, names, names, out / "confusion_matrix.png", "pixel confusion (rows truth)"
    )
    confusion_chart(
        acc.image_confusion(),
        image_names,
        ["none", *acc.classes, "no region"],
        out / "confusion_matrix_image.png",
        "image confusion (rows truth)",
    )
    line_chart(
        {"pixel PR": [(c["recall"], c["precision"]) for c in curve]},
        out / "pr_curve.png",
        "pixel precision-recall (any defect)",
        "recall",
        "precision",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    line_chart(
        {"defect recall vs FRR": [(s["false_reject_rate"], s["defect_recall"]) for s in sweep]},
        out / "image_sweep.png",
        "image level: defect recall vs false-reject rate",
        "false reject rate",
        "defect recall",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    best = max(curve, key=lambda c: c["f1"]) if curve else {}
    report["sweep.pixel_best_f1"] = best
    for target in (0.02, 0.05):
        ok = [s for s in sweep if s["false_reject_rate"] <= target + 1e-12]
        report[f"sweep.image_recall_at_frr_{target}"] = (
            max(s["defect_recall"] for s in ok) if ok else 0.0
        )
    image_sheet([(e.image, e.caption) for e in errors], out / "errors.png",
                f"wrongly decided images ({len(acc.image_errors())}; green truth, red model)"
                + (f", first {len(errors)} drawn" if len(errors) < len(acc.image_errors())
                   else ""))
    doc = {
        **report,
        "info": info,
        "image_errors": acc.image_errors(),
        "pixel_pr_curve": curve,
        "image_sweep": sweep,
        "confusion_matrix": conf_doc,
    }
    (out / "report.json").write_text(json.dumps(doc, indent=2))
    (out / "report.md").write_text(render_markdown(report, acc, info))
    return doc


def render_markdown(report: dict[str, Any], acc: Accumulator, info: dict[str, Any]) -> str:
    """A human-readable report."""

    def f(k: str) -> str:
        v = report.get(k, 0.0)
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    rows = [
        ["scope", "precision", "recall", "f1", "iou"],
        ["pixel (any defect)", *(f(f"pixel.{m}") for m in ("precision", "recall", "f1", "iou"))],
    ]
    for name in [*acc.classes, "mean", "std"]:
        rows.append([name, *(f(f"class.{name}.{m}") for m in ("precision", "recall", "f1", "iou"))])
    lines = [
        "# Evaluation report",
        "",
        *(f"- {k}: {v}" for k, v in info.items()),
        "",
        "## Pixel level (TP/FP/FN summed over all pixels)",
        "",
        _md_table(rows),
        "",
        "## Image level (operating point)",
        "",
        f"- image.defect_recall: {f('image.defect_recall')} "
        f"({report.get('image.n_defective')} defective images)",
        f"- image.false_reject_rate: {f('image.false_reject_rate')} "
        f"({report.get('image.n_defect_free')} defect-free images)",
        f"- best recall at <= 2 % false rejects (sweep): {f('sweep.image_recall_at_frr_0.02')}",
        f"- best recall at <= 5 % false rejects (sweep): {f('sweep.image_recall_at_frr_0.05')}",
        *(f"- image.defect_recall.{c}: {f('image.defect_recall.' + c)}" for c in acc.classes),
        "",
        "## Wrongly decided images (errors.png draws them)",
        "",
        _md_table([["image", "truth", "kind", "part score"]]
                  + [[str(e["image"]), str(e["truth"]), str(e["kind"]),
                      f"{float(e['score']):.3f}"]  # type: ignore[arg-type]
                     for e in acc.image_errors()])
        if acc.image_errors() else "none",
        "",
        "Charts: pr_curve.png, image_sweep.png, confusion_matrix.png, "
        "confusion_matrix_image.png (column 'no region': flagged, but no pixel reached its "
        "class threshold), errors.png; matrices in confusion_matrix.json.",
        "",
    ]
    return "\n".join(lines)


def split_indices(ds: Dataset, split_list: str | Path | None) -> list[int] | None:
    """The images a list file names (``Class/stem`` per line), or None for all."""
    if not split_list:
        return None
    from models.data import split_from_lists

    return split_from_lists(ds, {"test": Path(split_list)}).test


def evaluation_info(op: OperatingPoint, acc: Accumulator, **extra: Any) -> dict[str, Any]:
    """The ``info`` block of a report: what was evaluated, at which operating point."""
    return {
        **extra,
        "images": len(acc.image_labels),
        "operating_point": op.op_id,
        "rule": op.rule,
        "pixel_thresholds": dict(op.pixel_thresholds),
        "min_area_px": dict(op.min_area_px),
        "head_threshold": op.head_threshold,
        "chosen_on": op.chosen_on,
    }
