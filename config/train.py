"""Schema of a training run (``station train --config TRAIN.yaml``).

Every field has a default, a unit in brackets at the end of its description and, where it
applies, a range. Unknown keys are refused. See ``config/train.example.yaml`` and
``docs/training.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from config.errors import ConfigError

#: The training losses by name (models.losses implements each; a test keeps them equal).
LossName = Literal["bce", "dice", "wbd", "wbd_present", "ce_dice"]
LOSS_NAMES: tuple[str, ...] = get_args(LossName)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSection(_Strict):
    """Where the images are and how they are split."""

    path: str = Field(default="", description="Dataset root directory [path]")
    format: Literal["folder", "folder-classes", "labelme", "coco"] = Field(
        default="folder-classes", description="On-disk format of the dataset [-]"
    )
    group_pattern: str | None = Field(
        default=None,
        description="Regex on the file stem giving the part/sample key; None = each "
        "image its own group [-]",
    )
    val_ratio: float = Field(
        default=0.2, ge=0.0, lt=1.0, description="Share of groups for validation, 0..<1 [-]"
    )
    test_ratio: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Share of groups for a test split, 0..<1 [-]"
    )
    split_seed: int = Field(default=0, ge=0, description="Seed of the grouped split [-]")
    split_dir: str | None = Field(
        default=None,
        description="Directory with train.txt / val.txt (/ test.txt); overrides the ratios [path]",
    )
    binary: bool = Field(
        default=False, description="Merge every defect class into one class 'defect' [-]"
    )


class ModelSection(_Strict):
    """The network to train (names from models.build)."""

    architecture: str = Field(
        default="unet", description="Registry name: unet, unetplusplus, fpn, plain-unet [-]"
    )
    encoder: str | None = Field(
        default="tu-efficientnet_lite0", description="Encoder name; null for plain-unet [-]"
    )
    pretrained: bool = Field(
        default=True,
        description="Load offline ImageNet encoder weights when "
        "they exist (only tu-efficientnet_lite0 here) [-]",
    )
    head: Literal["sigmoid", "softmax"] = Field(
        default="sigmoid", description="Output head; softmax needs loss ce_dice [-]"
    )
    in_channels: Literal[1, 3] = Field(
        default=3, description="Network input channels (grey is replicated to 3) [-]"
    )
    base_channels: int = Field(
        default=16,
        ge=4,
        le=128,
        description="plain-unet width at full resolution, 4..128 [channels]",
    )
    decoder_channels: list[int] | None = Field(
        default=[128, 64, 32, 16, 16],
        description="smp decoder widths, 5 entries (slim, as the default model); None = smp "
        "default (256, 128, 64, 32, 16) [channels]",
    )
    depth: int = Field(default=4, ge=1, le=5, description="plain-unet poolings, 1..5 [-]")
    image_head: bool = Field(
        default=True,
        description="Train an image-level defect head on the encoder jointly with the masks "
        "(smp architectures only; part-level decisions can use it) [-]",
    )


class PatchSection(_Strict):
    """How training patches are drawn from full-resolution images."""

    mode: Literal["whole", "random", "grid"] = Field(
        default="random",
        description="whole: each image at native resolution on one canvas (padded, cropped only "
        "past whole_max); random: random square crops of `size`; grid: the paper's windows [-]",
    )
    whole_max: int = Field(
        default=1024,
        ge=64,
        le=8192,
        multiple_of=32,
        description="whole mode: largest canvas edge; bigger images are cropped, 64..8192 [px]",
    )
    sampler: Literal["natural", "balanced"] = Field(
        default="balanced",
        description="whole/random modes: natural = images as often as they occur; balanced = "
        "every defect class equally often, defect-free images making up free_share [-]",
    )
    size: int = Field(
        default=256,
        ge=32,
        le=2048,
        multiple_of=32,
        description="Patch edge, 32..2048, multiple of 32 [px]",
    )
    overlap: float = Field(
        default=0.25, ge=0.0, lt=1.0, description="Grid window overlap, 0..<1 [-]"
    )
    free_share: float = Field(
        default=0.25,
        ge=0.0,
        lt=1.0,
        description="Share of defect-free items in an epoch (grid windows; balanced "
        "sampler), 0..<1 [-]",
    )
    defect_prob: float = Field(
        default=0.7,
        ge=0.0,
        le=1.0,
        description="Random / whole mode: probability a crop (when one is needed) is centred "
        "near a defect pixel, 0..1 [-]",
    )
    per_epoch: int = Field(
        default=512, ge=1, le=1_000_000,
        description="Random / whole mode: items per epoch [patches]",
    )


class AugmentSection(_Strict):
    """Augmentation (torchvision v2); probabilities 0..1."""

    enabled: bool = Field(default=True, description="Apply augmentation to training patches [-]")
    flip_p: float = Field(default=0.5, ge=0, le=1, description="Probability of each flip [-]")
    rot90_p: float = Field(
        default=0.5, ge=0, le=1, description="Probability of a right-angle rotation [-]"
    )
    affine_p: float = Field(
        default=0.3, ge=0, le=1, description="Probability of a small affine [-]"
    )
    affine_degrees: float = Field(
        default=10.0, ge=0, le=45, description="Affine rotation range, 0..45 [deg]"
    )
    brightness: float = Field(default=0.2, ge=0, le=1, description="Brightness jitter, 0..1 [-]")
    contrast: float = Field(default=0.2, ge=0, le=1, description="Contrast jitter, 0..1 [-]")
    gamma_p: float = Field(default=0.3, ge=0, le=1, description="Probability of a gamma change [-]")
    noise_p: float = Field(default=0.3, ge=0, le=1, description="Probability of Gaussian noise [-]")
    noise_sigma: float = Field(
        default=0.02, ge=0, le=0.5, description="Noise std on 0..1 pixels, 0..0.5 [-]"
    )


class TrainConfig(_Strict):
    """One training run."""

    data: DataSection = Field(default_factory=lambda: DataSection())
    model: ModelSection = Field(default_factory=lambda: ModelSection())
    patch: PatchSection = Field(default_factory=lambda: PatchSection())
    augment: AugmentSection = Field(default_factory=lambda: AugmentSection())
    loss: LossName = Field(
        default="wbd",
        description="Loss: bce, dice, wbd (0.05 bce + 0.95 dice, the paper's), wbd_present "
        "(wbd with the dice over the classes present in the batch only), ce_dice (softmax) [-]",
    )
    any_weight: float = Field(
        default=1.0,
        ge=0,
        le=10,
        description="Sigmoid heads with several "
        "classes: weight of the extra loss on the any-defect map "
        "(max over classes), 0..10 [-]",
    )
    image_weight: float = Field(
        default=1.0,
        ge=0,
        le=100,
        description="Weight of the image head's loss (binary cross-entropy per class) "
        "against the segmentation loss, 0..100 [-]",
    )
    lr: float = Field(default=1e-4, gt=0, le=1, description="Peak AdamW learning rate, >0..1 [-]")
    weight_decay: float = Field(
        default=1e-4, ge=0, le=1, description="AdamW weight decay, 0..1 [-]"
    )
    lr_schedule: Literal["constant", "cosine"] = Field(
        default="cosine",
        description="cosine: linear warm-up, then cosine decay to 5 % of lr over the run "
        "(epochs or max_minutes, whichever ends first) [-]",
    )
    warmup_steps: int = Field(
        default=100, ge=0, le=1_000_000, description="Linear warm-up, 0..1e6 [steps]"
    )
    batch_size: int = Field(
        default=8, ge=1, le=512, description="Patches per step, 1..512 [patches]"
    )
    epochs: int = Field(
        default=50, ge=1, le=10_000, description="Maximum epochs, 1..10000 [epochs]"
    )
    patience_steps: int = Field(
        default=3000,
        ge=1,
        le=100_000_000,
        description="Early stopping: optimiser steps without improvement of the smoothed "
        "validation figure, 1..1e8 [steps]",
    )
    val_every_steps: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Validate every this many optimiser steps; None = once per epoch [steps]",
    )
    smoothing: float = Field(
        default=0.5,
        ge=0,
        lt=1,
        description="Exponential smoothing of the validation figure before it decides the "
        "best checkpoint and early stopping (0 = none), 0..<1 [-]",
    )
    monitor: Literal["val_combined", "val_f1", "val_loss"] = Field(
        default="val_combined",
        description="Validation figure that decides improvement: val_combined = mean of pixel "
        "F1 at 0.5 and the image-level AUROC of the part score [-]",
    )
    max_minutes: float | None = Field(
        default=None,
        gt=0,
        le=100_000,
        description="Wall-time budget; "
        "training stops after the epoch that passes it; None = "
        "no budget [min]",
    )
    seed: int = Field(default=0, ge=0, description="Seed of torch, numpy and random [-]")
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N [-]")
    amp: bool = Field(
        default=True,
        description="Mixed precision, bfloat16 where the GPU has it, else float16 (CUDA only; "
        "ignored on the CPU) [-]",
    )
    channels_last: bool = Field(
        default=True, description="Channels-last memory format (CUDA only) [-]"
    )
    workers: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description="DataLoader worker processes; None = 0 on the CPU, up to 8 on CUDA "
        "[processes]",
    )
    threads: int | None = Field(
        default=None, ge=1, le=256, description="torch CPU threads; None = torch default [threads]"
    )
    min_area_px: int = Field(
        default=1,
        ge=1,
        le=1_000_000,
        description="Smallest region the operating point search may use as a minimum area "
        "(it tries this and larger areas) [px]",
    )
    max_false_reject: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Target false-reject rate when the operating point is chosen on "
        "validation [-]",
    )
    op_rule: Literal["auto", "segmentation", "image_head", "either"] = Field(
        default="auto",
        description="Part-level rule of the operating point: segmentation regions, the image "
        "head, either of them, or auto = whichever flags most defective validation images "
        "within max_false_reject [-]",
    )
    op_flips: bool = Field(
        default=False,
        description="Choose the operating point on outputs averaged over horizontal and "
        "vertical flips (three passes per image); the station then flips too "
        "(pipeline.flips: model) [-]",
    )
    head_refit_steps: int = Field(
        default=1000,
        ge=0,
        le=100_000,
        description="After training, before the operating point is chosen: fit the image head "
        "again on the whole training images at their native size (models.head_fit; the head "
        "trained on crops scores whole defect-free parts too high), this many steps of 32 "
        "images; about a minute for 600 small images on 2 CPU cores; 0 = off [steps]",
    )
    val_layout: Literal["shape", "canvas"] = Field(
        default="shape",
        description="Validation batches: 'shape' = each image padded to a multiple of 32 only, "
        "batched with images of the same padded shape (as the station runs it); 'canvas' = "
        "every image mirrored out to one canvas (one input shape; its part-score AUROC reads "
        "low, the mirrored padding changes the features) [-]",
    )
    val_max_images: int | None = Field(
        default=None,
        ge=1,
        description="Validate on at most this many images (seeded choice); None = all [images]",
    )
    freeze_encoder: bool = Field(
        default=False,
        description="Train the decoder and the mask head only: the encoder and the image head "
        "keep their weights and batch-norm statistics, so the part score (which reads the "
        "encoder alone) stays exactly that of init_from; pair with head_refit_steps: 0 to keep "
        "the head itself [-]",
    )
    init_from: str | None = Field(
        default=None,
        description="Start from the weights of this checkpoint (same network; fine-tuning); "
        "None = fresh / ImageNet init [path]",
    )
    out: str = Field(default="runs/train", description="Output directory [path]")
    resume: bool = Field(default=False, description="Continue from out/last.pt when present [-]")
    progress: bool = Field(default=True, description="Show a progress bar [-]")

    @model_validator(mode="after")
    def _frozen_encoder_needs_weights(self) -> TrainConfig:
        if self.freeze_encoder and not self.init_from:
            raise ValueError(
                "freeze_encoder: true needs init_from (a trained checkpoint whose encoder and "
                "image head are kept); got init_from: null. Set init_from, or freeze_encoder: "
                "false to train the whole network"
            )
        return self


def load_train_config(
    path: str | Path | None, overrides: dict[str, object] | None = None
) -> TrainConfig:
    """Read a YAML training config (or defaults) and apply dotted-key overrides."""
    raw: dict[str, object] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"training config {path}: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"training config {path}: must be a mapping")
        raw = dict(loaded or {})
    for key, value in (overrides or {}).items():
        node: dict[str, object] = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"training override {key}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"training config {path or '(defaults)'}: {exc}") from exc
