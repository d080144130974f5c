"""Qualify models with the booth's own code: a :class:`models.scoring.Scorer` that runs
``pipeline.Inspector`` (preprocessing, tiles, blending, thresholds, connected components), used
by ``station evaluate`` to score a model, by ``station train`` to choose its operating point
and by ``station model operating-point`` to choose it again on other images.

So the figures a model is qualified with are the outputs the station will produce in the
booth, not those of a second implementation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch

from config.errors import DatasetError, ModelError
from config.pipeline import PipelineConfig
from config.rules import RulesConfig
from models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from models.data import Dataset, load_dataset
from models.evaluate import (
    ErrorThumb,
    evaluate,
    evaluation_info,
    split_indices,
    write_report,
)
from models.head_fit import HeadFitReport, HeadFitSettings, refit_image_head
from models.operating_point import OperatingPoint
from models.scoring import Choice, choose_operating_point
from pipeline.inspector import Inspector
from pipeline.postprocess import classify, defect_probabilities
from pipeline.types import InputImage

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
#: The camera name evaluation images go through the pipeline under.
EVAL_CAMERA = "eval"


class InspectorScorer:
    """Images through ``pipeline.Inspector`` as grey ``Mono8`` frames of one camera."""

    def __init__(self, inspector: Inspector) -> None:
        self.inspector = inspector
        self.classes = inspector.spec.defect_classes
        self.flips = inspector.flips

    @classmethod
    def for_checkpoint(
        cls, ckpt: Checkpoint, device: torch.device | str, pipeline: PipelineConfig | None = None,
        flips: bool | None = None,
    ) -> InspectorScorer:
        """A scorer for ``ckpt`` on ``device`` with the pipeline settings (default: the
        station's defaults, the booth's 384 px tiles with 25 % overlap). ``flips`` forces
        test-time flips on or off (default: ``pipeline.flips``, i.e. as the model's operating
        point says)."""
        raw = pipeline.model_dump() if pipeline is not None else {}
        dev = torch.device(device)
        raw["device"] = "cuda" if dev.type == "cuda" else "cpu"
        if flips is not None:
            raw["flips"] = "on" if flips else "off"
        return cls(Inspector(ckpt, pipeline=PipelineConfig.model_validate(raw),
                             rules=RulesConfig.model_validate({})))

    def probabilities(self, image: U8) -> tuple[F32, float | None]:
        """Per-defect-class probabilities ``(K, H, W)`` and the image head's part score."""
        ins = self.inspector
        probs = ins.probabilities(InputImage(EVAL_CAMERA, image, "Mono8"))
        p = defect_probabilities(probs, ins.spec.head)
        score, _ = ins.part_score()
        return p.float().cpu().numpy(), score

    def largest_regions(self, probs: F32, thresholds: dict[str, float]) -> dict[str, int]:
        """Per class, its largest defect as the station finds it at ``thresholds`` [px]
        (components under ``pipeline.min_area_px`` do not exist there)."""
        ins = self.inspector
        with torch.inference_mode():
            t = torch.from_numpy(probs).to(ins.device)
            if thresholds == {c: ins.thresholds[c] for c in self.classes}:
                result = ins.postprocess(EVAL_CAMERA, self._network_layout(t), None)
                out = dict.fromkeys(self.classes, 0)
                for d in result.defects:
                    out[d.class_name] = max(out[d.class_name], d.area_px)
                return out
            ths = torch.tensor([thresholds[c] for c in self.classes], device=ins.device)
            labels, _ = classify(t, ths, None)
            lab = labels.cpu().numpy()
        out = {}
        for k, c in enumerate(self.classes):
            m = (lab == k + 1).astype(np.uint8)
            area = 0
            if m.any():
                _, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
                areas = stats[1:, cv2.CC_STAT_AREA]
                areas = areas[areas >= ins.cfg.min_area_px]
                area = int(areas.max()) if len(areas) else 0
            out[c] = area
        return out

    def _network_layout(self, p: torch.Tensor) -> torch.Tensor:
        """Defect-class probabilities ``(K, H, W)`` back into the network's ``(1, C, H, W)``
        layout that ``Inspector.postprocess`` takes (softmax heads: background first)."""
        if self.inspector.spec.head == "softmax":
            bg = (1 - p.sum(dim=0, keepdim=True)).clamp(min=0)
            return torch.cat([bg, p], dim=0).unsqueeze(0)
        return p.unsqueeze(0)


def scorer_factory(pipeline: PipelineConfig | None = None) -> Any:
    """``(checkpoint, device, flips=...) -> InspectorScorer`` for ``models.train.train``."""

    def make(ckpt: Checkpoint, device: torch.device | str,
             flips: bool | None = None) -> InspectorScorer:
        return InspectorScorer.for_checkpoint(ckpt, device, pipeline, flips)

    return make


def run_evaluation(
    model_path: str | Path,
    data: str | Path,
    fmt: str,
    out: str | Path,
    device: str = "cpu",
    split_list: str | None = None,
    group_pattern: str | None = None,
    pipeline: PipelineConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Load, evaluate through the Inspector, write the report (``station evaluate``)."""
    t0 = time.monotonic()
    ckpt = load_checkpoint(model_path, "cpu")
    ds = load_dataset(data, fmt, group_pattern)
    indices = split_indices(ds, split_list)
    scorer = InspectorScorer.for_checkpoint(ckpt, device, pipeline)
    op = ckpt.meta.effective_operating_point()
    errors: list[ErrorThumb] = []
    acc = evaluate(scorer, ckpt.meta.spec.defect_classes, op, ds, indices, progress, errors)
    cfg = scorer.inspector.cfg
    info = evaluation_info(
        op, acc, model=str(model_path), model_id=ckpt.meta.model_id, data=str(data),
        format=fmt, split_list=split_list, device=str(scorer.inspector.device),
        pipeline=f"pipeline.Inspector, {cfg.mode} "
        + (f"{cfg.tile_size} px tiles, overlap {cfg.overlap} (frames of at most "
           f"{cfg.batch_size} tiles' pixels whole)" if cfg.mode == "tiled" else "")
        + (", test-time flips" if scorer.flips else ""),
        trained=ckpt.meta.trained, seconds=round(time.monotonic() - t0, 1),
    )
    return write_report(acc, Path(out), info, errors)


def rechoose_operating_point(
    model_path: str | Path,
    data: str | Path,
    fmt: str,
    split_list: str,
    out: str | Path,
    *,
    device: str = "cpu",
    flips: bool = False,
    max_false_reject: float = 0.02,
    rule: str = "auto",
    min_area_px: int = 1,
    group_pattern: str | None = None,
    pipeline: PipelineConfig | None = None,
    name: str | None = None,
) -> OperatingPoint:
    """Choose a checkpoint's operating point again on the images of ``split_list``, through
    the station's own pipeline, and write the checkpoint with it to ``out`` (same weights;
    ``station model operating-point``). The split must be one the model was not trained on."""
    ckpt = load_checkpoint(model_path, "cpu")
    ds = load_dataset(data, fmt, group_pattern)
    return _choose_and_save(
        ckpt, ds, data, split_list, out, device=device, flips=flips,
        choice=Choice(max_false_reject=max_false_reject, op_rule=rule, min_area_px=min_area_px),
        pipeline=pipeline, name=name, provenance={})


def refit_head(
    model_path: str | Path,
    data: str | Path,
    fmt: str,
    train_list: str,
    val_list: str,
    out: str | Path,
    *,
    settings: HeadFitSettings | None = None,
    choice: Choice | None = None,
    device: str = "cpu",
    flips: bool = False,
    group_pattern: str | None = None,
    pipeline: PipelineConfig | None = None,
    name: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[OperatingPoint, HeadFitReport]:
    """Fit the checkpoint's image head again on the whole images of ``train_list``
    (:mod:`models.head_fit`), then choose the operating point on ``val_list`` through the
    station's pipeline (``choice``: target, rule, smallest area; default 2 %, auto, 1 px), and
    write the checkpoint to ``out`` (``station model refit-head``). The two lists must not
    share an image."""
    ckpt = load_checkpoint(model_path, device)
    meta = ckpt.meta
    if not meta.spec.image_head:
        raise ModelError(
            f"model {meta.model_id} has no image head (model.image_head: false), so there is "
            "nothing to refit; choose its operating point with station model operating-point"
        )
    ds = load_dataset(data, fmt, group_pattern)
    train_idx = split_indices(ds, train_list) or []
    if not train_idx:
        raise DatasetError(f"--train-list {train_list}: names no image")
    val_idx = set(split_indices(ds, val_list) or [])
    shared = sorted(ds.samples[i].name for i in val_idx.intersection(train_idx))
    if shared:
        raise DatasetError(
            f"--train-list {train_list} and --val-list {val_list} share {len(shared)} image(s) "
            f"(first: {shared[0]}); the operating point must be chosen on images the head was "
            "not fitted on: use disjoint lists"
        )
    report = refit_image_head(
        ckpt.model, ds, train_idx, meta.spec.defect_classes, meta.normalisation.mean,
        meta.normalisation.std, meta.spec.in_channels, settings, device, progress)
    ckpt.model.to("cpu")
    op = _choose_and_save(
        ckpt, ds, data, val_list, out, device=device, flips=flips, choice=choice or Choice(),
        pipeline=pipeline, name=name,
        provenance={"head_refit": {"from": meta.model_id, "train_list": str(train_list),
                                   **report.as_dict()}})
    return op, report


def _choose_and_save(
    ckpt: Checkpoint, ds: Dataset, data: str | Path, split_list: str, out: str | Path, *,
    device: str, flips: bool, choice: Choice, pipeline: PipelineConfig | None,
    name: str | None, provenance: dict[str, Any],
) -> OperatingPoint:
    """Choose ``ckpt``'s operating point on ``split_list`` through the pipeline; write it."""
    meta = ckpt.meta
    if choice.op_rule in ("image_head", "either") and not meta.spec.image_head:
        raise ModelError(
            f"--rule {choice.op_rule}: model {meta.model_id} has no image head, which that "
            "rule needs; use --rule segmentation or auto"
        )
    indices = split_indices(ds, split_list) or []
    if not indices:
        raise DatasetError(f"--split-list {split_list}: names no image")
    scorer = InspectorScorer.for_checkpoint(ckpt, device, pipeline, flips)
    n_def = sum(1 for i in indices if ds.samples[i].label)
    where = (f"{Path(split_list).name} of {Path(data).name} ({len(indices)} images, "
             f"{n_def} defective)")
    op, pix = choose_operating_point(scorer, ds, indices, meta.spec.defect_classes, choice,
                                     where)
    save_checkpoint(
        out, ckpt.model, name=name or meta.name, spec=meta.spec,
        normalisation=meta.normalisation, patch_size=meta.patch_size,
        thresholds=dict(op.pixel_thresholds), trained=meta.trained,
        provenance={**meta.provenance, **provenance, "operating_point_rechosen": {
            "from": meta.model_id, "split_list": str(split_list), **pix}},
        operating_point=op,
    )
    return op
