"""``station train``: train a segmentation model (``--config TRAIN.yaml`` and/or flags)."""

from __future__ import annotations

import argparse

import yaml

from config.errors import ConfigError
from config.train import LOSS_NAMES, load_train_config

#: flag -> dotted key of the training config
FLAG_KEYS: dict[str, str] = {
    "data": "data.path",
    "format": "data.format",
    "out": "out",
    "epochs": "epochs",
    "max_minutes": "max_minutes",
    "patch_size": "patch.size",
    "batch_size": "batch_size",
    "architecture": "model.architecture",
    "encoder": "model.encoder",
    "loss": "loss",
    "device": "device",
    "seed": "seed",
    "threads": "threads",
    "lr": "lr",
    "per_epoch": "patch.per_epoch",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station train``."""
    p = subparsers.add_parser(
        "train",
        help="train a segmentation model",
        description="Train a UNet-family model; writes best.pt (station checkpoint format), "
        "last.pt (resume), history.csv/json and loss_curve.png into --out. "
        "See docs/training.md.",
    )
    p.add_argument("--config", "-c", metavar="TRAIN.yaml", help="training config file")
    p.add_argument("--data", metavar="DIR", help="dataset root (data.path)")
    p.add_argument("--format", choices=["folder", "folder-classes", "labelme", "coco"],
                   help="dataset layout (data.format; docs/training.md)")
    p.add_argument("--out", metavar="DIR", help="output directory")
    p.add_argument("--epochs", type=int, help="maximum epochs (train.epochs)")
    p.add_argument("--max-minutes", type=float, help="wall-time budget [min]")
    p.add_argument("--patch-size", type=int, help="patch edge [px]")
    p.add_argument("--per-epoch", type=int, help="random crops per epoch [patches]")
    p.add_argument("--batch-size", type=int, help="patches per step (train.batch_size)")
    p.add_argument("--architecture", help="unet, unetplusplus, fpn, plain-unet")
    p.add_argument("--encoder", help="e.g. tu-efficientnet_lite0, resnet50; 'none' for plain")
    p.add_argument("--loss", choices=list(LOSS_NAMES),
                   help="training loss (train.loss)")
    p.add_argument("--lr", type=float, help="Adam learning rate (train.lr)")
    p.add_argument("--device", help="auto, cpu, cuda")
    p.add_argument("--seed", type=int, help="seed of torch, numpy and random (train.seed)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--no-pretrained", action="store_true", help="random encoder init")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a training config key, e.g. --set patch.mode=grid",
    )
    p.set_defaults(func=run)


def overrides_from_args(args: argparse.Namespace) -> dict[str, object]:
    """Dotted-key overrides from the flags and ``--set``."""
    out: dict[str, object] = {}
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            out[key] = None if (flag == "encoder" and value == "none") else value
    if args.resume:
        out["resume"] = True
    if args.no_pretrained:
        out["model.pretrained"] = False
    if args.no_progress:
        out["progress"] = False
    for item in args.overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(raw)
    return out


def run(args: argparse.Namespace) -> int:
    """Train and print where the model went."""
    from models.train import train
    from station.qualify import scorer_factory

    cfg = load_train_config(args.config, overrides_from_args(args))
    result = train(cfg, scorer_factory())
    op = result.operating_point
    print(
        f"best checkpoint: {result.best_path} (step {result.best_step}, "
        f"{cfg.monitor} {result.best_score:.4f}); stopped: {result.stopped}; "
        f"{result.seconds / 60:.1f} min; operating point: rule {op.get('rule')}, validation "
        f"recall {op.get('figures', {}).get('defect_recall', 0):.3f} at "
        f"{op.get('figures', {}).get('false_reject_rate', 0):.3f} false rejects"
    )
    return 0
