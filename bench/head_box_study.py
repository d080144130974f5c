"""Whether the image head's box (``part_box``) points at the defect: its hit rate on a split.

    python -m bench.head_box_study --model default \
        --data ../shared/datasets/magnetic-tile --split val

Every image of the split goes through the station's own ``Inspector.inspect`` (the model's
operating point, flips as it was chosen). For each defective image that the head's rule fails,
the box is compared with the true mask: a *hit* when the box holds at least one defect pixel,
*centred* when it holds the centre of the defect's bounding box too; and its size as a share
of the image. Per class and in all; an image whose mask is empty is listed, not judged.
Nothing is chosen from it; the figures say how far an operator can trust the box. Default
split: validation (``--split test`` reads the test list).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from models.data import load_dataset, split_from_lists
from pipeline import Inspector
from pipeline.locate import Box
from pipeline.types import InputImage


@dataclass(frozen=True)
class BoxHit:
    """How one box relates to one image's defect mask."""

    hit: bool  # at least one defect pixel in the box
    centred: bool  # the centre of the defects' bounding box is in the box
    share: float  # the box's area / the image's area


def judge_box(box: Box, truth: npt.NDArray[np.bool_]) -> BoxHit:
    """Compare ``box`` (x, y, w, h) with the defect mask ``truth`` (H, W); an empty mask is
    refused (a box cannot hit nothing)."""
    ys, xs = np.nonzero(truth)
    if len(ys) == 0:
        raise ValueError("the mask holds no defect pixel; judge boxes on defective images only")
    x, y, w, h = box
    inside = bool(truth[max(0, y):y + h, max(0, x):x + w].any())
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    centred = bool(x <= cx < x + w and y <= cy < y + h)
    return BoxHit(inside, centred, w * h / truth.size)


def summarise(hits: list[BoxHit]) -> dict[str, float]:
    """Counts and shares of a list of box judgements."""
    n, hit = len(hits), sum(h.hit for h in hits)
    return {"boxes": n, "hit": hit, "centred": sum(h.centred for h in hits),
            "hit_rate": round(hit / n, 4) if n else 0.0,
            "median_share": round(float(np.median([h.share for h in hits])), 4) if n else 0.0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="checkpoint (default: the shipped one)")
    p.add_argument("--data", required=True)
    p.add_argument("--splits", default="models/splits/magnetic-tile")
    p.add_argument("--split", default="val", choices=["val", "test"])
    p.add_argument("--out", help="write head_boxes.json here")
    a = p.parse_args(argv)

    ins = Inspector.from_checkpoint(a.model)
    if ins.operating_point is None or not ins.operating_point.uses_head:
        p.error(f"--model {a.model}: its operating point does not use the image head")
    ds = load_dataset(a.data, "folder-classes")
    split = split_from_lists(ds, {a.split: Path(a.splits) / f"{a.split}.txt"})
    indices = getattr(split, a.split)
    by_class: dict[str, list[BoxHit]] = defaultdict(list)
    misses: list[str] = []
    unmasked: list[str] = []
    flagged = defective = 0
    t0 = time.monotonic()
    for n, i in enumerate(indices, 1):
        if n % 50 == 0:
            print(f"{n}/{len(indices)} images", file=sys.stderr)
        sample = ds.samples[i]
        if not sample.label:
            continue
        defective += 1
        image, mask = ds.load(i)
        cam = ins.inspect([InputImage("eval", image, "Mono8")]).cameras[0]
        if cam.part_box is None:
            continue
        flagged += 1
        if not (mask > 0).any():  # a defective image whose mask is empty: nothing to hit
            unmasked.append(sample.name)
            continue
        hit = judge_box(cam.part_box, mask > 0)
        by_class[sample.label].append(hit)
        if not hit.hit:
            misses.append(sample.name)
    doc = {"model": ins.model_info["model_id"], "split": a.split, "defective": defective,
           "head_failed": flagged, "all": summarise([h for v in by_class.values() for h in v]),
           "classes": {c: summarise(v) for c, v in sorted(by_class.items())},
           "missed": misses, "empty_masks": unmasked, "seconds": round(time.monotonic() - t0, 1)}
    for name, row in [("all", doc["all"]), *doc["classes"].items()]:
        print(f"{name:<9} boxes {row['boxes']:>3}  hit {row['hit']:>3}  centred "
              f"{row['centred']:>3}  median share of the image {row['median_share']:.2f}")
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "head_boxes.json").write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
