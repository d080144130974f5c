"""Qualify a checkpoint on an annotated dataset: ``report.json``, ``report.md`` and charts.

Inference runs on whole images (reflect-padded to a multiple of 32, cropped back), optionally
with flip test-time augmentation. The operating point comes from the checkpoint: per-class
pixel thresholds (``meta.thresholds``) and, when training chose them,
``meta.provenance["operating_point"]`` = ``{"image_threshold": t, "min_area_px": n}`` (an image
is flagged when the any-defect probability has a connected region of >= n pixels at >= t).

Public report keys (flat, see :meth:`models.metrics.Accumulator.report`): ``pixel.precision``,
``pixel.recall``, ``pixel.f1``, ``pixel.iou``, ``class.<name>.<metric>``,
``class.mean.<metric>``, ``class.std.<metric>``, ``image.defect_recall``,
``image.false_reject_rate``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog
import torch
from torch import nn

from models.build import SIZE_DIVISOR, ModelSpec
from models.checkpoint import Checkpoint, Normalisation, load_checkpoint
from models.data import Dataset, load_dataset, pad_reflect_to
from models.metrics import Accumulator, has_region, image_score
from models.plots import confusion_chart, line_chart

log = structlog.get_logger(__name__)
F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class OperatingPoint:
    """Thresholds that turn probabilities into decisions."""

    thresholds: tuple[float, ...]  # per defect class
    image_threshold: float = 0.5
    min_area_px: int = 16

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> OperatingPoint:
        """The checkpoint's operating point (0.5 / 16 px where it names none)."""
        meta = ckpt.meta
        op: dict[str, Any] = dict(meta.provenance.get("operating_point", {}) or {})
        ths = tuple(meta.threshold(c) for c in meta.spec.defect_classes)
        return cls(ths, float(op.get("image_threshold", min(ths))), int(op.get("min_area_px", 16)))


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


def to_input(images: Sequence[U8], norm: Normalisation, in_channels: int) -> torch.Tensor:
    """Grey uint8 images (same size) -> normalised float tensor (N, C, H, W)."""
    x = torch.from_numpy(np.stack(images)).float().div_(255.0).unsqueeze(1)
    x = x.expand(-1, in_channels, -1, -1)
    mean = torch.tensor(norm.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - mean) / std


def logits_to_probs(logits: torch.Tensor, head: str) -> torch.Tensor:
    """Per-defect-class probabilities (N, K, H, W) from logits of either head."""
    if head == "softmax":
        return torch.softmax(logits.float(), dim=1)[:, 1:]
    return torch.sigmoid(logits.float())


@torch.no_grad()
def predict(
    model: nn.Module,
    spec: ModelSpec,
    norm: Normalisation,
    image: U8,
    device: torch.device | str = "cpu",
    tta: bool = False,
) -> F32:
    """Per-defect-class probabilities (K, H, W) of one grey image (any size)."""
    h, w = image.shape
    ph = -(-h // SIZE_DIVISOR) * SIZE_DIVISOR
    pw = -(-w // SIZE_DIVISOR) * SIZE_DIVISOR
    x = to_input([pad_reflect_to(image, ph, pw)], norm, spec.in_channels).to(device)
    probs = logits_to_probs(model(x), spec.head)
    if tta:
        for dims in ((3,), (2,)):
            probs = probs + torch.flip(logits_to_probs(model(torch.flip(x, dims)), spec.head), dims)
        probs = probs / 3
    out: F32 = probs[0, :, :h, :w].cpu().numpy().astype(np.float32)
    return out


def decide(probs: F32, op: OperatingPoint) -> tuple[U8, F32, float, int]:
    """Class map (0 = background), any-defect probability, image score and image decision
    (0 = not flagged, else the dominant class) of one image's probabilities."""
    any_prob = probs.max(axis=0)
    ths = np.asarray(op.thresholds, np.float32).reshape(-1, 1, 1)
    passing = np.where(probs >= ths, probs, -1.0)
    best = passing.argmax(axis=0)
    pred = np.where(passing.max(axis=0) >= 0, best + 1, 0).astype(np.uint8)
    score = image_score(any_prob, op.min_area_px)
    region = any_prob >= op.image_threshold
    image_pred = 0
    if has_region(region, op.min_area_px):
        counts = np.bincount(probs.argmax(axis=0)[region], minlength=probs.shape[0])
        image_pred = int(np.argmax(counts)) + 1
    return pred, any_prob.astype(np.float32), score, image_pred


def map_classes(ds: Dataset, model_classes: Sequence[str]) -> list[int]:
    """Dataset class index (1..) -> model class index; a binary model maps all to 1."""
    if len(model_classes) == 1:
        return [0] + [1] * len(ds.classes)
    out = [0]
    for name in ds.classes:
        out.append(list(model_classes).index(name) + 1 if name in model_classes else 0)
    return out


def evaluate(
    ckpt: Checkpoint,
    ds: Dataset,
    indices: Sequence[int] | None = None,
    device: torch.device | str = "cpu",
    tta: bool = False,
    op: OperatingPoint | None = None,
    progress: bool = False,
) -> Accumulator:
    """Run the checkpoint over ``ds`` (or the chosen indices) and accumulate the metrics."""
    spec, norm = ckpt.meta.spec, ckpt.meta.normalisation
    op = op or OperatingPoint.from_checkpoint(ckpt)
    classes = spec.defect_classes
    mapping = np.asarray(map_classes(ds, classes), np.uint8)
    acc = Accumulator(list(classes))
    ckpt.model.to(device).eval()
    chosen = list(range(len(ds))) if indices is None else list(indices)
    for k, i in enumerate(chosen):
        image, mask = ds.load(i, cache=False)
        gt = mapping[mask]
        probs = predict(ckpt.model, spec, norm, image, device, tta)
        pred, any_prob, score, image_pred = decide(probs, op)
        label = int(gt.max()) if gt.any() else 0
        if label:
            label = int(np.bincount(gt.ravel(), minlength=len(classes) + 1)[1:].argmax()) + 1
        acc.add(gt, pred, any_prob, label, score, image_pred)
        if progress and (k + 1) % 50 == 0:
            log.info("evaluate.progress", done=k + 1, total=len(chosen))
    return acc


def _md_table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def write_report(acc: Accumulator, out: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Write report.json, report.md, pr_curve.png, image_sweep.png, confusion_matrix.json/png
    (pixel and image level) into ``out``; return the report dict."""
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
            "cols_prediction": ["not flagged", *acc.classes],
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
        ["none", *acc.classes],
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
        ok = [s for s in sweep if s["false_reject_rate"] <= target]
        report[f"sweep.image_recall_at_frr_{target}"] = (
            max(s["defect_recall"] for s in ok) if ok else 0.0
        )
    doc = {
        **report,
        "info": info,
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
        "Charts: pr_curve.png, image_sweep.png, confusion_matrix.png, "
        "confusion_matrix_image.png; matrices in confusion_matrix.json.",
        "",
    ]
    return "\n".join(lines)


def run_evaluation(
    model_path: str | Path,
    data: str | Path,
    fmt: str,
    out: str | Path,
    device: str = "cpu",
    tta: bool = False,
    split_list: str | None = None,
    group_pattern: str | None = None,
) -> dict[str, Any]:
    """Load, evaluate, write the report (the ``station evaluate`` command)."""
    from models.data import split_from_lists

    t0 = time.monotonic()
    ckpt = load_checkpoint(model_path, device)
    ds = load_dataset(data, fmt, group_pattern)
    indices = None
    if split_list:
        indices = split_from_lists(ds, {"test": Path(split_list)}).test
    acc = evaluate(ckpt, ds, indices, device, tta, progress=True)
    op = OperatingPoint.from_checkpoint(ckpt)
    info = {
        "model": str(model_path),
        "model_id": ckpt.meta.model_id,
        "data": str(data),
        "format": fmt,
        "images": len(acc.image_labels),
        "tta": tta,
        "device": device,
        "pixel_thresholds": dict(zip(ckpt.meta.spec.defect_classes, op.thresholds, strict=True)),
        "image_threshold": op.image_threshold,
        "min_area_px": op.min_area_px,
        "trained": ckpt.meta.trained,
        "seconds": round(time.monotonic() - t0, 1),
    }
    return write_report(acc, Path(out), info)
