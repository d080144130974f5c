"""``station model info CKPT [--json]``: what a checkpoint holds, verified."""

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
