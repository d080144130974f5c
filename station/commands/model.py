"""``station model info CKPT [--json]``: what a checkpoint holds, verified.

``station model operating-point CKPT --data DIR --split-list FILE --out NEW``: choose the
operating point again on annotated images (through the station's pipeline) and write the
checkpoint with it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station model``."""
    p = sub.add_parser("model", help="inspect model checkpoints",
                       description="Inspect model checkpoints.")
    msub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = msub.add_parser(
        "info", help="verify a checkpoint and print its meta",
        description="Verify CKPT (format, meta, weights digest, weights fit the network) and "
        "print what it holds. 'default' is the shipped model. Exit 1 if it is unusable.",
    )
    info.add_argument("checkpoint", metavar="CKPT", help="checkpoint file, or 'default'")
    info.add_argument("--json", action="store_true", help="print the meta as JSON")
    info.set_defaults(func=info_cmd)
    op = msub.add_parser(
        "operating-point", help="choose a checkpoint's operating point again on your images",
        description="Run the images of --split-list through the station's pipeline, choose the "
        "pixel thresholds, per-class minimum areas, image-head threshold and rule that flag the "
        "most defective images with at most --max-false-reject of the defect-free ones "
        "rejected, and write CKPT with that operating point to --out (same weights). Use "
        "images the model was not trained on, and keep others apart to qualify the result "
        "(station evaluate).",
    )
    op.add_argument("checkpoint", metavar="CKPT", help="checkpoint file, or 'default'")
    op.add_argument("--data", required=True, metavar="DIR", help="dataset root")
    op.add_argument("--format", default="folder-classes",
                    choices=["folder", "folder-classes", "labelme", "coco"],
                    help="dataset layout (docs/training.md)")
    op.add_argument("--split-list", required=True, metavar="FILE",
                    help="the images to choose on, one Class/stem per line")
    op.add_argument("--out", required=True, metavar="NEW.ckpt", help="checkpoint to write")
    op.add_argument("--max-false-reject", type=float, default=0.02, metavar="SHARE",
                    help="largest share of defect-free images rejected (default 0.02)")
    op.add_argument("--rule", default="auto",
                    choices=["auto", "segmentation", "image_head", "either"],
                    help="part-level rule (default auto: whichever flags most)")
    op.add_argument("--flips", action=argparse.BooleanOptionalAction, default=False,
                    help="average the network over flips (three passes; the station then "
                    "flips too); default off")
    op.add_argument("--min-area-px", type=int, default=1, metavar="PX",
                    help="smallest minimum area the search tries (default 1)")
    op.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="where the pipeline runs (auto: CUDA when present)")
    op.add_argument("--config", metavar="STATION.yaml",
                    help="take the pipeline settings from this station config")
    op.add_argument("--name", help="model name in the new checkpoint (default: the old one)")
    op.set_defaults(func=operating_point_cmd)


def info_cmd(args: argparse.Namespace) -> int:
    """Load (and so verify) the checkpoint; print its meta."""
    from models import DEFAULT_CHECKPOINT
    from models.build import count_parameters
    from models.checkpoint import load_checkpoint

    path = DEFAULT_CHECKPOINT if args.checkpoint == "default" else Path(args.checkpoint)
    ckpt = load_checkpoint(path)
    meta = ckpt.meta
    params = count_parameters(ckpt.model)
    if args.json:
        data = meta.model_dump(mode="json")
        data.update(model_id=meta.model_id, parameters=params, file=str(path),
                    effective_operating_point=meta.effective_operating_point().model_dump(),
                    operating_point_id=meta.effective_operating_point().op_id,
                    file_bytes=path.stat().st_size)
        print(json.dumps(data, indent=2))
        return 0
    spec = meta.spec
    rows = [
        ("file", f"{path} ({path.stat().st_size / 1e6:.1f} MB)"),
        ("model_id", meta.model_id),
        ("trained", "yes" if meta.trained else "NO (untrained: its defects are noise)"),
        ("architecture", f"{spec.architecture} / encoder {spec.encoder}"),
        ("parameters", f"{params / 1e6:.2f} M"),
        ("head", spec.head),
        ("classes", ", ".join(f"{i}={c}" for i, c in enumerate(spec.classes))),
        ("in_channels", str(spec.in_channels)),
        ("normalisation", f"mean {meta.normalisation.mean} std {meta.normalisation.std}"),
        ("patch_size", f"{meta.patch_size} px"),
        ("thresholds", ", ".join(f"{k} {v:.2f}" for k, v in meta.thresholds.items()) or "-"),
        ("image_head", "yes (part-level logits per class)" if spec.image_head else "no"),
        ("operating point", (meta.operating_point.describe() if meta.operating_point else
                             "none stored; from its thresholds and provenance: "
                             + meta.effective_operating_point().describe())),
        ("kwargs", json.dumps(spec.kwargs)),
        ("created_utc", meta.created_utc),
        ("weights_sha256", meta.weights_sha256),
        ("provenance", json.dumps(meta.provenance)),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    return 0


def operating_point_cmd(args: argparse.Namespace) -> int:
    """Choose the operating point on the listed images; write the new checkpoint."""
    from config.errors import DatasetError

    if not 0.0 <= args.max_false_reject <= 1.0:
        raise DatasetError(f"--max-false-reject {args.max_false_reject}: must be within [0, 1] "
                           "(a share, e.g. 0.02 for 2 %)")
    if args.min_area_px < 1:
        raise DatasetError(f"--min-area-px {args.min_area_px}: must be >= 1 px")
    if not Path(args.data).is_dir():
        raise DatasetError(f"--data {args.data}: no such directory; give the dataset root")
    if not Path(args.split_list).is_file():
        raise DatasetError(f"--split-list {args.split_list}: no such file")
    from models import DEFAULT_CHECKPOINT
    from station.commands._common import device_and_pipeline
    from station.qualify import rechoose_operating_point

    path = DEFAULT_CHECKPOINT if args.checkpoint == "default" else Path(args.checkpoint)
    device, pipeline = device_and_pipeline(args)
    op = rechoose_operating_point(
        path, args.data, args.format, args.split_list, args.out, device=device,
        flips=args.flips, max_false_reject=args.max_false_reject, rule=args.rule,
        min_area_px=args.min_area_px, pipeline=pipeline, name=args.name)
    fig = op.figures
    print(f"wrote {args.out}: {op.describe()}")
    print(f"on these images: {fig.get('defect_recall', 0):.1%} of defective images flagged, "
          f"{fig.get('false_reject_rate', 0):.1%} of defect-free rejected"
          + ("" if fig.get("target_met", 0) else
             f" (the target {op.false_reject_target:.1%} could not be met)"))
    return 0
