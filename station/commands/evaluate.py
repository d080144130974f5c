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
        description="Runs every image through the station's own pipeline (pipeline.Inspector: "
        "the booth's tiles, blending, thresholds and the model's operating point) and writes "
        "report.json and report.md (pixel.*, class.*, image.*), pr_curve.png, image_sweep.png "
        "and confusion_matrix.json/png into --out.",
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
        help="dataset layout (docs/training.md): folder, folder-classes (default), labelme, coco",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="report directory")
    p.add_argument(
        "--split-list",
        metavar="FILE",
        help="evaluate only the images listed (e.g. a run's split/val.txt)",
    )
    p.add_argument("--group-pattern", help="regex giving the part key from a file stem")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the pipeline runs (auto: CUDA when present)")
    p.add_argument("--mode", choices=["tiled", "whole"], default=None,
                   help="pipeline mode (default: the config's, else tiled as in the booth)")
    p.add_argument("--config", metavar="STATION.yaml",
                   help="take the pipeline settings (tile size, overlap, precision) from this "
                   "station config (default: the station's defaults)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the headline figures."""
    from config.errors import DatasetError

    data = Path(args.data)
    if not data.is_dir():
        raise DatasetError(f"--data {data}: no such directory; give the dataset root")
    if args.split_list and not Path(args.split_list).is_file():
        raise DatasetError(f"--split-list {args.split_list}: no such file")
    from config.pipeline import PipelineConfig
    from models.evaluate import HEADLINE_KEYS
    from station.commands._common import device_and_pipeline
    from station.qualify import run_evaluation

    model = args.model
    if model == "default":
        from models import DEFAULT_CHECKPOINT

        model = str(DEFAULT_CHECKPOINT)
    device, pipeline = device_and_pipeline(args)
    if args.mode:
        raw = pipeline.model_dump() if pipeline is not None else {}
        pipeline = PipelineConfig.model_validate({**raw, "mode": args.mode})
    report = run_evaluation(model, args.data, args.format, args.out, device,
                            args.split_list, args.group_pattern, pipeline)
    keys = [*HEADLINE_KEYS, "image.auroc", "sweep.image_recall_at_frr_0.02"]
    print(json.dumps({k: round(float(report[k]), 4) for k in keys if k in report}, indent=2))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0
