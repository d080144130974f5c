"""``station model info CKPT [--json]``: what a checkpoint holds, verified.

``station model operating-point CKPT --data DIR --split-list FILE --out NEW``: choose the
operating point again on annotated images (through the station's pipeline) and write the
checkpoint with it.

``station model refit-head CKPT --data DIR --train-list FILE --val-list FILE --out NEW``: fit
the image head again on whole training images (:mod:`models.head_fit`), then choose the
operating point on the validation images, and write the checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.operating_point import OperatingPoint


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
    _choice_options(op, lists={"--split-list": "the images to choose on"})
    op.add_argument("--flips", action=argparse.BooleanOptionalAction, default=False,
                    help="average the network over flips (three passes; the station then "
                    "flips too); default off")
    op.set_defaults(func=operating_point_cmd)
    rh = msub.add_parser(
        "refit-head", help="fit the image head again on whole images, then choose the "
        "operating point",
        description="Fit CKPT's image head again on the whole images of --train-list at their "
        "native size (the rest of the network is frozen; one encoder pass per image and "
        "flip, then seconds of fitting), then choose the operating point on --val-list "
        "through the station's pipeline, as 'station model operating-point' does, and write "
        "the checkpoint to --out. Use the images the model was trained on for --train-list "
        "and others for --val-list; keep a third set apart to qualify the result "
        "(station evaluate).",
    )
    _choice_options(rh, lists={
        "--train-list": "images the head is fitted on",
        "--val-list": "images the operating point is chosen on (none of --train-list)"})
    rh.add_argument("--steps", type=int, default=1000, metavar="N",
                    help="fitting steps of 32 images (default 1000)")
    rh.add_argument("--flips", action=argparse.BooleanOptionalAction, default=None,
                    help="choose the operating point on outputs averaged over flips (default: "
                    "as CKPT's operating point; the fit itself always uses the flipped images)")
    rh.set_defaults(func=refit_head_cmd)


def _choice_options(p: argparse.ArgumentParser, lists: dict[str, str]) -> None:
    """The options ``operating-point`` and ``refit-head`` share: the checkpoint, the data and
    its lists (``lists``: option -> what its images are for), the output, the choice's target,
    rule and smallest area, where it runs, the pipeline settings and the new name."""
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint file, or 'default'")
    p.add_argument("--data", required=True, metavar="DIR", help="dataset root")
    p.add_argument("--format", default="folder-classes",
                   choices=["folder", "folder-classes", "labelme", "coco"],
                   help="dataset layout (docs/training.md)")
    for option, what in lists.items():
        p.add_argument(option, required=True, metavar="FILE",
                       help=f"{what}, one Class/stem per line")
    p.add_argument("--out", required=True, metavar="NEW.ckpt", help="checkpoint to write")
    p.add_argument("--max-false-reject", type=float, default=0.02, metavar="SHARE",
                   help="largest share of defect-free images rejected (default 0.02)")
    p.add_argument("--rule", default="auto",
                   choices=["auto", "segmentation", "image_head", "either"],
                   help="part-level rule (default auto: whichever flags most)")
    p.add_argument("--min-area-px", type=int, default=1, metavar="PX",
                   help="smallest minimum area the search tries (default 1)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the network and the pipeline run (auto: CUDA when present)")
    p.add_argument("--config", metavar="STATION.yaml",
                   help="take the pipeline settings from this station config")
    p.add_argument("--name", help="model name in the new checkpoint (default: the old one)")


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


def _check_choice_args(args: argparse.Namespace, lists: dict[str, str]) -> None:
    """Refuse bad --max-false-reject, --min-area-px, --data and list files, naming them."""
    from config.errors import DatasetError

    if not 0.0 <= args.max_false_reject <= 1.0:
        raise DatasetError(f"--max-false-reject {args.max_false_reject}: must be within [0, 1] "
                           "(a share, e.g. 0.02 for 2 %)")
    if args.min_area_px < 1:
        raise DatasetError(f"--min-area-px {args.min_area_px}: must be >= 1 px")
    if not Path(args.data).is_dir():
        raise DatasetError(f"--data {args.data}: no such directory; give the dataset root")
    for option, value in lists.items():
        if not Path(value).is_file():
            raise DatasetError(f"{option} {value}: no such file")


def _print_choice(out: str, op: OperatingPoint) -> None:
    """The written checkpoint and what its operating point does on the chosen images."""
    fig = op.figures
    print(f"wrote {out}: {op.describe()}")
    print(f"on these images: {fig.get('defect_recall', 0):.1%} of defective images flagged, "
          f"{fig.get('false_reject_rate', 0):.1%} of defect-free rejected"
          + ("" if fig.get("target_met", 0) else
             f" (the target {op.false_reject_target:.1%} could not be met)"))


def operating_point_cmd(args: argparse.Namespace) -> int:
    """Choose the operating point on the listed images; write the new checkpoint."""
    _check_choice_args(args, {"--split-list": args.split_list})
    from models import DEFAULT_CHECKPOINT
    from station.commands._common import device_and_pipeline
    from station.qualify import rechoose_operating_point

    path = DEFAULT_CHECKPOINT if args.checkpoint == "default" else Path(args.checkpoint)
    device, pipeline = device_and_pipeline(args)
    op = rechoose_operating_point(
        path, args.data, args.format, args.split_list, args.out, device=device,
        flips=args.flips, max_false_reject=args.max_false_reject, rule=args.rule,
        min_area_px=args.min_area_px, pipeline=pipeline, name=args.name)
    _print_choice(args.out, op)
    return 0


def refit_head_cmd(args: argparse.Namespace) -> int:
    """Fit the image head on the training list, choose the point on the validation list."""
    from config.errors import DatasetError

    _check_choice_args(args, {"--train-list": args.train_list, "--val-list": args.val_list})
    if args.steps < 1:
        raise DatasetError(f"--steps {args.steps}: must be >= 1 (default 1000)")
    from tqdm import tqdm  # type: ignore[import-untyped]

    from models import DEFAULT_CHECKPOINT
    from models.checkpoint import read_checkpoint
    from models.head_fit import HeadFitSettings
    from models.scoring import Choice
    from station.commands._common import device_and_pipeline
    from station.qualify import refit_head

    path = DEFAULT_CHECKPOINT if args.checkpoint == "default" else Path(args.checkpoint)
    flips = args.flips
    if flips is None:
        flips = read_checkpoint(path)[0].effective_operating_point().flips
    device, pipeline = device_and_pipeline(args)
    bars: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            for bar in bars.values():
                bar.close()
            bars[stage] = tqdm(total=total, desc=f"head fit: {stage}", unit=(
                "image" if stage == "features" else "step"), leave=True)
        bars[stage].update(done - bars[stage].n)

    try:
        op, report = refit_head(
            path, args.data, args.format, args.train_list, args.val_list, args.out,
            settings=HeadFitSettings(steps=args.steps),
            choice=Choice(max_false_reject=args.max_false_reject, op_rule=args.rule,
                          min_area_px=args.min_area_px),
            device=device, flips=flips, pipeline=pipeline, name=args.name, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    print(f"head fitted on {report.images} images ({report.defective} defective) x "
          f"{report.variants} flips, {report.steps} steps, loss {report.loss_first:.4f} -> "
          f"{report.loss_last:.4f}, {report.seconds:.0f} s")
    _print_choice(args.out, op)
    return 0
