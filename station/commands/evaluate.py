"""``station evaluate``: qualify a checkpoint on an annotated dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station evaluate``."""
    p = subparsers.add_parser(
        "evaluate",
        help="score a model on an annotated dataset",
        description="Writes report.json and report.md (pixel.*, class.*, image.*), "
        "pr_curve.png, image_sweep.png and confusion_matrix.json/png into --out.",
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="CKPT",
        help="checkpoint file, or 'default' for models/default/model.ckpt",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="dataset root")
    p.add_argument(
        "--format",
        default="folder-classes",
        choices=["folder", "folder-classes", "labelme", "coco"],
    )
    p.add_argument("--out", required=True, metavar="DIR", help="report directory")
    p.add_argument(
        "--split-list",
        metavar="FILE",
        help="evaluate only the images listed (e.g. a run's split/val.txt)",
    )
    p.add_argument("--group-pattern", help="regex giving the part key from a file stem")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--tta", action="store_true", help="average over flips")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the headline figures."""
    import torch

    from models.evaluate import HEADLINE_KEYS, run_evaluation

    model = args.model
    if model == "default":
        from models import DEFAULT_CHECKPOINT

        model = str(DEFAULT_CHECKPOINT)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    report = run_evaluation(
        model,
        args.data,
        args.format,
        args.out,
        device,
        args.tta,
        args.split_list,
        args.group_pattern,
    )
    print(json.dumps({k: round(float(report[k]), 4) for k in HEADLINE_KEYS}, indent=2))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0
