"""Whether the decoder's last features carry one defect class at all: a linear probe.

    python -m bench.channel_probe --model models/default/model.ckpt \
        --data ../shared/datasets/magnetic-tile --cls Blowhole

The network (frozen) runs over every training image whole; per image, every pixel of the class
(at most 3,000) and 1,500 other pixels are kept, each as its 3 x 3 neighbourhood of the
decoder's last features (what the segmentation head's 3 x 3 convolution sees). A logistic fit
on them (the class's pixels weighted up by the square root of the imbalance) is then scored on
the validation images, every pixel: precision / recall / F1 at a few thresholds, and the
network's own channel for the class beside it. A probe that cannot find the class says that
the features lack it, so refitting the segmentation head would not help: the network needs
training that keeps the class. The test split is not read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoint import load_checkpoint
from models.data import load_dataset, split_from_lists
from models.metrics import Scores
from models.runtime import grey_batch, logits_to_probs, pad_to_divisor

THRESHOLDS = (0.5, 0.7, 0.9)


def sample_pixels(
    is_class: npt.NDArray[np.bool_], rng: np.random.Generator, max_pos: int = 3000,
    n_neg: int = 1500,
) -> npt.NDArray[np.int64]:
    """Flat indices of at most ``max_pos`` pixels of the class and ``n_neg`` others."""
    pos, neg = np.flatnonzero(is_class), np.flatnonzero(~is_class)
    if len(pos) > max_pos:
        pos = rng.choice(pos, max_pos, replace=False)
    neg = rng.choice(neg, min(len(neg), n_neg), replace=False)
    return np.concatenate([pos, neg]).astype(np.int64)


def scores_at(probs: npt.NDArray[np.float32], truth: npt.NDArray[np.bool_],
              t: float) -> Scores:
    """Pixel scores of ``probs >= t`` against ``truth``."""
    pred = probs >= t
    return Scores(int((pred & truth).sum()), int((pred & ~truth).sum()),
                  int((~pred & truth).sum()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--cls", required=True, help="defect class to probe, e.g. Blowhole")
    p.add_argument("--splits", default="models/splits/magnetic-tile")
    p.add_argument("--out", help="write probe.json here")
    a = p.parse_args(argv)

    ckpt = load_checkpoint(a.model)
    meta, net = ckpt.meta, ckpt.model.eval()
    classes = meta.spec.defect_classes
    if a.cls not in classes:
        p.error(f"--cls {a.cls!r}: the model's classes are {classes}")
    k = classes.index(a.cls)
    ds = load_dataset(a.data, "folder-classes")
    label = ds.classes.index(a.cls) + 1
    split = split_from_lists(ds, {s: Path(a.splits) / f"{s}.txt" for s in ("train", "val")})
    rng = np.random.default_rng(0)
    t0 = time.monotonic()
    encoder: nn.Module = getattr(net, "encoder")  # noqa: B009
    decoder: nn.Module = getattr(net, "decoder")  # noqa: B009
    seg_head: nn.Module = getattr(net, "segmentation_head")  # noqa: B009

    @torch.no_grad()
    def features(image: npt.NDArray[np.uint8]) -> tuple[torch.Tensor, torch.Tensor]:
        """(pixels, 144) neighbourhoods of the decoder's last features; (pixels,) channel k."""
        h, w = image.shape
        x, (top, _, left, _) = pad_to_divisor(grey_batch(
            [image], meta.normalisation.mean, meta.normalisation.std, meta.spec.in_channels))
        dec = decoder(encoder(x))
        probs = logits_to_probs(seg_head(dec), meta.spec.head)
        dec = dec[:, :, top:top + h, left:left + w]
        own = probs[0, k, top:top + h, left:left + w].reshape(-1)
        return F.unfold(dec, 3, padding=1)[0].T, own

    xs, ys = [], []
    for i in split.train:
        image, mask = ds.load(i)
        f, _ = features(image)
        truth = (mask == label).ravel()
        idx = sample_pixels(truth, rng)
        xs.append(f[idx].half())
        ys.append(torch.from_numpy(truth[idx]))
    x, y = torch.cat(xs), torch.cat(ys).float()
    n_pos = float(y.sum())
    if n_pos == 0:
        p.error(f"--cls {a.cls!r}: no pixel of that class in the training images")
    weight = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=1e-2)
    pos_weight = torch.tensor(((len(y) - n_pos) / n_pos) ** 0.5)
    gen = torch.Generator().manual_seed(0)
    for _ in range(600):
        pick = torch.randint(len(x), (8192,), generator=gen)
        loss = F.binary_cross_entropy_with_logits(x[pick].float() @ weight + bias, y[pick],
                                                  pos_weight=pos_weight)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    probe_p, own_p, truth_all = [], [], []
    for i in split.val:
        image, mask = ds.load(i)
        f, own = features(image)
        with torch.no_grad():
            probe_p.append(torch.sigmoid(f @ weight + bias).numpy())
        own_p.append(own.numpy())
        truth_all.append((mask == label).ravel())
    truth = np.concatenate(truth_all)
    rows = []
    for name, probs in (("probe", np.concatenate(probe_p)), ("network", np.concatenate(own_p))):
        for t in THRESHOLDS:
            s = scores_at(probs, truth, t)
            rows.append({"scorer": name, "threshold": t, **s.as_dict()})
            print(f"{name} >= {t}: precision {s.precision:.3f} recall {s.recall:.3f} "
                  f"F1 {s.f1:.3f}")
    doc = {"model": meta.model_id, "class": a.cls, "train_pixels": len(y),
           "train_class_pixels": int(n_pos), "val_class_pixels": int(truth.sum()),
           "seconds": round(time.monotonic() - t0, 1), "rows": rows}
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "probe.json").write_text(json.dumps(doc, indent=1))
    print(json.dumps({k: v for k, v in doc.items() if k != "rows"}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
