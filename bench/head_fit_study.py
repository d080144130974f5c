"""How sensitive the image head's fit on whole images is to its settings: one feature cache,
one fit per setting, each scored on the validation split with the head alone.

    python -m bench.head_fit_study --model runs/cpu-2h/best.pt \
        --data ../shared/datasets/magnetic-tile --out runs/head-fit-study

The encoder of ``--model`` runs once over the training and validation images (whole, plain and
mirrored both ways: :func:`models.head_fit.image_features`). Each setting then fits the head
from the model's trained head (:func:`models.head_fit.fit_head`) and scores every validation
image by its part score averaged over the three variants, as the station does with flips. For
each setting: the validation recall at the lowest threshold that rejects at most
``--max-false-reject`` of the defect-free validation images, its false-reject rate and the
AUROC. The test split is not read. Writes ``head_fit_study.json`` and ``.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.build import MaxImageHead
from models.checkpoint import load_checkpoint
from models.data import load_dataset, split_from_lists
from models.head_fit import HeadFitSettings, fit_head, image_features, image_head_of, image_targets
from models.metrics import auroc
from models.operating_point import threshold_at_budget

#: The settings compared: name -> changes to the defaults (``zero_init``: start from zero).
SETTINGS: dict[str, dict[str, Any]] = {
    "trained head, no fit": {"steps": 0},
    "defaults (seed 0)": {},
    "seed 1": {"seed": 1},
    "seed 2": {"seed": 2},
    "dropout 0": {"dropout": 0.0},
    "300 steps": {"steps": 300},
    "3000 steps": {"steps": 3000},
    "head started from zero": {"zero_init": True},
}


def head_scores(head: MaxImageHead, features: list[list[torch.Tensor]]) -> np.ndarray:
    """Per image: the largest class logit, averaged over its variants (the station's flips)."""
    head.eval()
    with torch.no_grad():
        return np.asarray([
            float(torch.stack([head(f.float()[None])[0] for f in feats]).mean(0).max())
            for feats in features
        ])


def score(scores: np.ndarray, defective: np.ndarray, max_fr: float) -> dict[str, float]:
    """Recall and false-reject rate at the budget threshold, and the AUROC."""
    free = scores[~defective]
    t = threshold_at_budget(free, math.floor(max_fr * len(free) + 1e-9))
    t = float("-inf") if t is None else t
    return {"recall": float((scores[defective] >= t).mean()),
            "false_reject_rate": float((free >= t).mean()),
            "auroc": auroc(scores, defective), "threshold": t}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--splits", default="models/splits/magnetic-tile")
    p.add_argument("--out", required=True)
    p.add_argument("--max-false-reject", type=float, default=0.02)
    a = p.parse_args(argv)

    ckpt = load_checkpoint(a.model)
    meta, model = ckpt.meta, ckpt.model.eval()
    ds = load_dataset(a.data, "folder-classes")
    split = split_from_lists(ds, {k: Path(a.splits) / f"{k}.txt" for k in ("train", "val")})
    t0 = time.monotonic()
    feats: dict[str, list[list[torch.Tensor]]] = {}
    for part in ("train", "val"):
        idx = list(getattr(split, part))
        feats[part] = []
        for n, i in enumerate(idx):
            image, _ = ds.load(i)
            feats[part].append(image_features(model, image, meta.normalisation.mean,
                                              meta.normalisation.std, meta.spec.in_channels))
            print(f"\rfeatures {part} {n + 1}/{len(idx)}", end="", file=sys.stderr)
        print(file=sys.stderr)
    cache_s = time.monotonic() - t0
    classes = meta.spec.defect_classes
    targets = image_targets(ds, list(split.train), classes)
    defective = np.asarray([bool(ds.samples[i].label) for i in split.val])
    trained = image_head_of(model)
    rows: list[dict[str, Any]] = []
    for name, change in SETTINGS.items():
        head = copy.deepcopy(trained)
        change = dict(change)
        if change.pop("zero_init", False):
            with torch.no_grad():
                head.conv.weight.zero_()
                if head.conv.bias is not None:
                    head.conv.bias.zero_()
        settings = replace(HeadFitSettings(), **{k: v for k, v in change.items()
                                                 if k != "steps" or v})
        t1 = time.monotonic()
        if change.get("steps", 1):
            fit_head(head, feats["train"], targets, settings)
        rows.append({"setting": name, **asdict(settings), "fitted": bool(change.get("steps", 1)),
                     **score(head_scores(head, feats["val"]), defective, a.max_false_reject),
                     "seconds": round(time.monotonic() - t1, 1)})
        r = rows[-1]
        print(f"{name}: recall {r['recall']:.3f} at {r['false_reject_rate']:.3f}, "
              f"AUROC {r['auroc']:.4f}", file=sys.stderr)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"model": meta.model_id, "data": a.data, "max_false_reject": a.max_false_reject,
           "feature_cache_s": round(cache_s, 1), "rows": rows}
    (out / "head_fit_study.json").write_text(json.dumps(doc, indent=1))
    lines = ["| setting | validation recall / FRR | validation AUROC |", "|---|---|---|"]
    lines += [f"| {r['setting']} | {r['recall']:.3f} / {r['false_reject_rate']:.3f} | "
              f"{r['auroc']:.4f} |" for r in rows]
    (out / "head_fit_study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
