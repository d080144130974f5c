"""``station study``: the encoders x losses grid on a dataset (markdown + CSV)."""

from __future__ import annotations

import argparse
from pathlib import Path

from config.train import load_train_config
from station.commands.train import overrides_from_args


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station study``."""
    p = subparsers.add_parser(
        "study",
        help="train the encoders x losses grid and tabulate it",
        description="One training run per (variant, loss) with the same base config; scores "
        "each best checkpoint on the validation split; writes study.md and study.csv.",
    )
    p.add_argument("--data", metavar="DIR", required=True, help="dataset root")
    p.add_argument(
        "--format",
        default="folder-classes",
        choices=["folder", "folder-classes", "labelme", "coco"],
        help="dataset layout (docs/training.md): folder, folder-classes (default), labelme, coco",
    )
    p.add_argument("--out", metavar="DIR", default="runs/study", help="output directory")
    p.add_argument("--config", "-c", metavar="TRAIN.yaml", help="base training config")
    p.add_argument(
        "--variants",
        default="plain-unet,resnet50,lite0",
        help="comma list of plain-unet, resnet50, lite0",
    )
    p.add_argument("--losses", default="bce,dice,wbd", help="comma list of bce, dice, wbd, ce_dice")
    p.add_argument("--max-minutes", type=float, help="wall-time budget per run [min]")
    p.add_argument("--epochs", type=int, help="maximum epochs per run (train.epochs)")
    p.add_argument("--patch-size", type=int, help="patch edge [px] (data.patch_size)")
    p.add_argument("--per-epoch", type=int,
                   help="random crops per epoch [patches] (data.per_epoch)")
    p.add_argument("--batch-size", type=int, help="patches per step (train.batch_size)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", help="auto, cpu, cuda")
    p.add_argument("--seed", type=int, help="seed of torch, numpy and random (train.seed)")
    p.add_argument("--eval-max-images", type=int, help="score on at most N validation images")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one key of the training config (repeatable)")
    p.set_defaults(
        func=run,
        resume=False,
        no_pretrained=False,
        no_progress=True,
        architecture=None,
        encoder=None,
        loss=None,
        lr=None,
    )


def run(args: argparse.Namespace) -> int:
    """Run the grid and print the table."""
    from models.study import run_study

    overrides = overrides_from_args(args)
    overrides.pop("out", None)
    base = load_train_config(args.config, overrides)
    out = Path(args.out)
    run_study(
        base,
        out,
        [v.strip() for v in args.variants.split(",") if v.strip()],
        [x.strip() for x in args.losses.split(",") if x.strip()],
        args.eval_max_images,
    )
    print((out / "study.md").read_text())
    return 0
