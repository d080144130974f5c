"""Which part-level score separates defective from defect-free images best: measured on one
trained model, thresholds chosen on the validation split, applied unchanged to the test split.

    python -m bench.decision_study --model runs/cpu-1h/best.pt \
        --data ../shared/datasets/magnetic-tile --out runs/cpu-1h/decision

Every image runs whole through :func:`models.runtime.predict_image` (the runtime the station
uses), once plain and once averaged over horizontal and vertical flips. Per image it records
these part scores (higher = more likely defective):

- ``head``: the image head's largest class logit (the ``image_head`` rule);
- ``peak``: the largest any-defect probability;
- ``top64``: the mean of the 64 largest any-defect probabilities (a peak that needs a few
  pixels, not one);
- ``region@t``: the area of the largest 8-connected any-defect region at probability >= t
  (the ``segmentation`` rule with one class-agnostic minimum area) [px].

For each score the threshold is the lowest that rejects at most ``--max-false-reject`` of the
validation defect-free images; the table gives recall and false rejects on validation and on
test at that threshold, and the test AUROC. Test chooses nothing. Writes ``decision.json``
(every image's scores too) and ``decision.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from models.checkpoint import load_checkpoint
from models.data import load_dataset, split_from_lists
from models.metrics import auroc
from models.operating_point import threshold_at_budget
from models.runtime import predict_image

REGION_THRESHOLDS = (0.5, 0.7, 0.9)
F32 = npt.NDArray[np.float32]


def part_scores(probs: F32, head: F32 | None) -> dict[str, float]:
    """The part scores of one image from its per-class probabilities ``(K, H, W)``."""
    any_prob = probs.max(axis=0)
    flat = np.sort(any_prob.ravel())
    out: dict[str, float] = {
        "peak": float(flat[-1]),
        "top64": float(flat[-64:].mean()),
    }
    if head is not None:
        out["head"] = float(head.max())
    for t in REGION_THRESHOLDS:
        m = (any_prob >= t).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        out[f"region@{t}"] = float(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0.0
    return out


def threshold_for(free_scores: npt.NDArray[np.float64], max_fr: float) -> float:
    """Lowest threshold (a value >=) that rejects at most ``max_fr`` of ``free_scores``."""
    t = threshold_at_budget(free_scores, math.floor(max_fr * len(free_scores) + 1e-9))
    return 0.0 if t is None else t


def rates(scores: npt.NDArray[np.float64], labels: npt.NDArray[np.bool_],
          t: float) -> tuple[float, float]:
    """(recall on defective, false-reject rate on defect-free) at threshold ``t``."""
    flag = scores >= t
    return float(flag[labels].mean()), float(flag[~labels].mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--splits", default="models/splits/magnetic-tile")
    p.add_argument("--out", required=True)
    p.add_argument("--max-false-reject", type=float, default=0.02)
    p.add_argument("--no-flips", action="store_true", help="skip the flipped pass")
    a = p.parse_args(argv)

    ckpt = load_checkpoint(a.model)
    meta, model = ckpt.meta, ckpt.model.eval()
    ds = load_dataset(a.data, "folder-classes")
    split = split_from_lists(ds, {"val": Path(a.splits) / "val.txt",
                                  "test": Path(a.splits) / "test.txt"})
    variants = [False] if a.no_flips else [False, True]
    rows: dict[str, list[dict[str, Any]]] = {"val": [], "test": []}
    t0 = time.monotonic()
    for part in ("val", "test"):
        for n, i in enumerate(getattr(split, part)):
            image, _ = ds.load(i)
            rec: dict[str, Any] = {"image": ds.samples[i].name, "label": ds.samples[i].label}
            for flips in variants:
                probs, head = predict_image(model, meta.spec.head, meta.normalisation.mean,
                                            meta.normalisation.std, meta.spec.in_channels,
                                            image, "cpu", flips=flips)
                for k, v in part_scores(probs, head).items():
                    rec[f"{k}{'+flips' if flips else ''}"] = v
            rows[part].append(rec)
            print(f"\r{part} {n + 1}/{len(getattr(split, part))}", end="", file=sys.stderr)
        print(file=sys.stderr)
    keys = [k for k in rows["val"][0] if k not in ("image", "label")]
    table: list[dict[str, Any]] = []
    for k in keys:
        sv = np.asarray([r[k] for r in rows["val"]], np.float64)
        lv = np.asarray([bool(r["label"]) for r in rows["val"]])
        st = np.asarray([r[k] for r in rows["test"]], np.float64)
        lt = np.asarray([bool(r["label"]) for r in rows["test"]])
        t = threshold_for(sv[~lv], a.max_false_reject)
        rv, fv = rates(sv, lv, t)
        rt, ft = rates(st, lt, t)
        per_class = {}
        for c in sorted({r["label"] for r in rows["test"] if r["label"]}):
            sel = np.asarray([r["label"] == c for r in rows["test"]])
            per_class[c] = f"{int((st[sel] >= t).sum())}/{int(sel.sum())}"
        table.append({"score": k, "threshold": t, "val_recall": rv, "val_frr": fv,
                      "test_recall": rt, "test_frr": ft, "val_auroc": auroc(sv, lv),
                      "test_auroc": auroc(st, lt), "test_per_class": per_class})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"model": meta.name, "model_sha": meta.weights_sha256[:12], "data": a.data,
           "max_false_reject": a.max_false_reject, "seconds": time.monotonic() - t0,
           "table": table, "images": rows}
    (out / "decision.json").write_text(json.dumps(doc, indent=1))
    lines = ["| score | val recall / FRR | val AUROC | test recall / FRR | test AUROC "
             "| test per class |", "|---|---|---|---|---|---|"]
    for r in table:
        lines.append(
            f"| {r['score']} | {r['val_recall']:.3f} / {r['val_frr']:.3f} | {r['val_auroc']:.3f} "
            f"| {r['test_recall']:.3f} / {r['test_frr']:.3f} | {r['test_auroc']:.3f} | "
            + ", ".join(f"{c} {v}" for c, v in r["test_per_class"].items()) + " |")
    (out / "decision.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
