"""The Inspector: one object the daemon and ``station inspect`` share, frames in, verdict out.

``Inspector.from_config(cfg)`` loads the checkpoint, picks the device and compiles the rules;
``inspect(images, calibration, mm_per_px)`` runs preprocess -> tiling/infer/blend ->
postprocess -> verdict for every camera and returns a :class:`PipelineResult`. Bad input raises
:class:`PipelineError` (the daemon turns exceptions into ERROR verdicts); it never returns ERROR.

The decision: by default the model's own operating point (``CheckpointMeta.operating_point``:
per-class pixel thresholds and minimum areas in px, the image head's threshold, and the rule
that combines them, all chosen on a validation split when the model was trained). When the
config sets ``rules.default`` or ``rules.classes``, those rules decide instead, and
``model_info["decision"]`` says so (``station status`` shows it). ``model.thresholds`` in the
config override single pixel thresholds either way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import structlog
import torch

from config.errors import CheckpointError, ConfigError, PipelineError
from config.pipeline import PipelineConfig
from config.rules import RulesConfig
from config.schema import StationConfig
from models import DEFAULT_CHECKPOINT
from models.build import SIZE_DIVISOR
from models.checkpoint import Checkpoint, load_checkpoint
from models.runtime import flip_mean
from pipeline.errors import torch_errors
from pipeline.infer import Segmenter, select_device
from pipeline.locate import has_head_cells, head_cells, hot_spot
from pipeline.postprocess import (
    classify,
    defect_probabilities,
    downscale_defect_map,
    find_defects,
)
from pipeline.preprocess import Normaliser, Preprocessor
from pipeline.tiling import StageClock, Tiler, predict_whole
from pipeline.types import CameraCalibration, CameraResult, InputImage, PipelineResult
from pipeline.verdict import (
    Region,
    judge,
    judge_operating_point,
    load_region,
    operating_point_rules,
)

log = structlog.get_logger(__name__)


def checkpoint_path(cfg: StationConfig) -> Path:
    """The checkpoint file the config names (``default`` = the shipped model)."""
    name = cfg.model.checkpoint
    return DEFAULT_CHECKPOINT if name == "default" else cfg.resolve(name)


class Inspector:
    """A loaded model plus the pipeline and rules around it. Thread-safe (one at a time)."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        pipeline: PipelineConfig | None = None,
        rules: RulesConfig | None = None,
        thresholds: Mapping[str, float] | None = None,
        regions: Mapping[str, Region] | None = None,
    ) -> None:
        self.cfg = pipeline or PipelineConfig.model_validate({})
        self.rules = rules or RulesConfig.model_validate({})
        self.checkpoint = checkpoint
        meta = checkpoint.meta
        self.spec = meta.spec
        self.class_names = list(meta.spec.classes)
        defect_classes = meta.spec.defect_classes
        for where, names in (("model.thresholds", thresholds or {}),
                             ("rules.classes", self.rules.classes)):
            unknown = sorted(set(names) - set(defect_classes))
            if unknown:
                raise ConfigError(
                    f"{where} names {', '.join(unknown)}, which model {meta.model_id} does not "
                    f"have; its defect classes: {', '.join(defect_classes)}"
                )
        explicit = bool(self.rules.model_fields_set & {"default", "classes"})
        self.operating_point = None if explicit else meta.effective_operating_point()
        merged = {c: meta.threshold(c) for c in defect_classes}
        if self.operating_point is not None:
            merged.update(self.operating_point.pixel_thresholds)
        merged.update(thresholds or {})
        self.thresholds = merged
        self._op_rules = (operating_point_rules(self.operating_point, self.rules)
                          if self.operating_point is not None else None)
        #: test-time flips: as the operating point was chosen, unless pipeline.flips forces it
        self.flips = (self.cfg.flips == "on" or (
            self.cfg.flips == "model" and self.operating_point is not None
            and self.operating_point.flips))
        self.device = select_device(self.cfg.device)
        self.segmenter = Segmenter(
            checkpoint.model, meta.spec.head, self.device, half=self.cfg.half,
            half_dtype=self.cfg.half_dtype, channels_last=self.cfg.channels_last,
            compile_model=self.cfg.compile,
        )
        self.preprocessor = Preprocessor(
            self.device, meta.spec.in_channels,
            Normaliser(meta.normalisation.mean, meta.normalisation.std),
            flat_eps=self.cfg.flat_field_eps,
        )
        self.tiler = Tiler(self.cfg.tile_size, self.cfg.overlap, self.cfg.batch_size,
                           SIZE_DIVISOR, cuda_batch=self.cfg.cuda_batch_size,
                           graphs=self.cfg.cuda_graphs and not self.cfg.compile)
        self._thresholds_t = torch.tensor([merged[c] for c in defect_classes],
                                          device=self.device)
        self.regions = dict(regions or {})
        self._roi_cache: dict[tuple[str, int, int], torch.Tensor] = {}
        self._lock = threading.Lock()
        self._has_cells = has_head_cells(self.segmenter.model)
        self._settings = {"pipeline.mode": self.cfg.mode, "pipeline.flips": self.flips,
                          "pipeline.tile_size": self.cfg.tile_size,
                          "pipeline.batch_size": self.cfg.batch_size,
                          "pipeline.half": self.cfg.half}
        log.info("inspector ready", **{k: v for k, v in self.model_info.items()
                                       if k in ("model_id", "trained", "device", "mode")})

    @classmethod
    def from_config(cls, cfg: StationConfig) -> Inspector:
        """Load ``cfg.model.checkpoint`` and set up pipeline and rules from ``cfg``.

        Raises :class:`CheckpointError` / :class:`ModelError` when the model cannot be used,
        :class:`ConfigError` when rules or thresholds name classes the model lacks.
        """
        path = checkpoint_path(cfg)
        device = select_device(cfg.pipeline.device)
        checkpoint = load_checkpoint(path, device="cpu")
        regions = {
            cam: load_region(roi, str(cfg.resolve(roi.mask)) if roi.mask else None)
            for cam, roi in cfg.rules.regions.items()
        }
        log.debug("loading model", path=str(path), device=str(device))
        return cls(checkpoint, pipeline=cfg.pipeline, rules=cfg.rules,
                   thresholds=cfg.model.thresholds, regions=regions)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        pipeline: PipelineConfig | None = None,
        rules: RulesConfig | None = None,
    ) -> Inspector:
        """An inspector for a checkpoint file (``default`` = the shipped model)."""
        p = DEFAULT_CHECKPOINT if str(path) == "default" else Path(path)
        return cls(load_checkpoint(p, device="cpu"), pipeline=pipeline, rules=rules)

    @property
    def model_info(self) -> dict[str, object]:
        """What runs: model_id, trained, architecture, encoder, classes, device, ..."""
        meta = self.checkpoint.meta
        return {
            "model_id": meta.model_id,
            "name": meta.name,
            "trained": meta.trained,
            "architecture": meta.spec.architecture,
            "encoder": meta.spec.encoder,
            "classes": list(self.class_names),
            "head": meta.spec.head,
            "in_channels": meta.spec.in_channels,
            "thresholds": dict(self.thresholds),
            "patch_size": meta.patch_size,
            "weights_sha256": meta.weights_sha256,
            "checkpoint": str(self.checkpoint.path) if self.checkpoint.path else None,
            "device": str(self.device),
            "dtype": str(self.segmenter.dtype).removeprefix("torch."),
            "mode": self.cfg.mode,
            "flips": self.flips,
            "tile_size": self.cfg.tile_size,
            "overlap": self.cfg.overlap,
            "image_head": meta.spec.image_head,
            "operating_point": self.decision_id,
            "decision": (
                f"model operating point {self.operating_point.describe()}"
                if self.operating_point is not None
                else "config rules (rules.default / rules.classes override the model's "
                f"operating point {meta.effective_operating_point().op_id})"
            ),
        }

    @property
    def decision_id(self) -> str:
        """What decides: the operating point's id, or ``config-rules``."""
        return self.operating_point.op_id if self.operating_point is not None else "config-rules"

    def _roi(self, camera: str, height: int, width: int) -> torch.Tensor | None:
        region = self.regions.get(camera)
        if region is None:
            return None
        key = (camera, height, width)
        if key not in self._roi_cache:
            mask = region.rasterise(height, width)
            self._roi_cache[key] = torch.from_numpy(mask).to(self.device)
        return self._roi_cache[key]

    def _sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def probabilities(
        self, image: InputImage, calibration: CameraCalibration | None = None,
        clock: StageClock | None = None,
    ) -> torch.Tensor:
        """Preprocess + tiled (or whole-frame) inference: ``(1, C, H, W)`` float32 on the device.

        ``clock`` collects device-synchronised sub-stage times (preprocess, tile, infer, blend).
        """
        with torch.inference_mode():
            self.segmenter.begin_frame()
            t = clock.sync() if clock else 0.0
            x = self.preprocessor(image, calibration)
            if clock:
                clock.add("preprocess", t)
            def forward(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
                return self._forward(t, clock)

            probs, head = flip_mean(forward, x) if self.flips else forward(x)
            self.segmenter.image_logits = head
            return probs

    def runs_whole(self, height: int, width: int) -> bool:
        """Whether a frame of ``height`` x ``width`` goes through the network in one pass:
        always in whole mode; in tiled mode when it holds at most ``pipeline.batch_size``
        tiles' pixels and ``pipeline.small_frames`` is ``whole`` (one pass then costs no more
        memory than one batch of tiles, and the frame is not reflect-padded out to a tile,
        which the image head would see)."""
        if self.cfg.mode == "whole":
            return True
        return (self.cfg.small_frames == "whole"
                and height * width <= self.cfg.batch_size * self.cfg.tile_size ** 2)

    def _forward(
        self, x: torch.Tensor, clock: StageClock | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # The side-effect-free predictor (a CUDA graph can hold it); the image logits'
        # maximum over tiles comes back from the tiler.
        if self.runs_whole(int(x.shape[-2]), int(x.shape[-1])):
            return predict_whole(x, self.segmenter.predict, SIZE_DIVISOR, clock)
        return self.tiler.run(x, self.segmenter.predict, clock)

    def warmup(self, sizes: Sequence[tuple[int, int]] = (), always: bool = False) -> float:
        """Prepare the fast path before the first part; returns the seconds it took.

        On CUDA (or with ``pipeline.compile``): runs blank frames of ``sizes`` (``(height,
        width)`` of the cameras; with none given, one tile when compiling), so that the tile
        batch is sized, the CUDA graph captured and ``torch.compile`` done before the station
        reports ready. On the CPU without compile it does nothing (unless ``always``).
        """
        if self.device.type != "cuda" and not self.cfg.compile and not always:
            return 0.0
        t0 = time.perf_counter()
        c = self.spec.in_channels
        shapes = list(sizes) or ([(self.cfg.tile_size, self.cfg.tile_size)]
                                 if self.cfg.compile and self.cfg.mode == "tiled" else [])
        with self._lock, torch.inference_mode():
            for h, w in shapes:
                self._forward(torch.zeros((1, c, h, w), device=self.device), None)
            self._sync()
        took = time.perf_counter() - t0
        log.info("inspector warmed up", sizes=shapes, seconds=round(took, 2))
        return took

    def part_score(self) -> tuple[float | None, str | None]:
        """The image head's part score of the last frame :meth:`probabilities` ran (its largest
        class logit over all tiles) and that class; (None, None) without an image head."""
        logits = self.segmenter.image_logits
        if logits is None:
            return None, None
        row = logits[0].float()
        k = int(torch.argmax(row))
        return float(row[k]), self.spec.defect_classes[k]

    def postprocess(self, camera: str, probs: torch.Tensor, mm_per_px: float | None
                    ) -> CameraResult:
        """Probabilities -> camera result with the largest defects (largest first).

        Bounded cost whatever the frame holds (see :func:`find_defects`): only the defect map,
        the statistics of the ``max_regions`` largest regions and the pixels of their outlines
        come to the host. More regions than that: the result is ``capped`` (never a PASS).
        """
        with torch.inference_mode():
            p = defect_probabilities(probs, self.spec.head)
            h, w = int(p.shape[1]), int(p.shape[2])
            # One reduction instead of a mask of the frame: probabilities are bounded, so the
            # sum is finite exactly when every value is.
            if not bool(torch.isfinite(p.sum())):
                raise PipelineError(
                    f"camera {camera!r}: the network produced NaN or infinite probabilities"
                )
            labels, scores = classify(p, self._thresholds_t, self._roi(camera, h, w))
            factor = self.cfg.defect_map_downscale
            dmap = downscale_defect_map(labels, scores, factor)
            defect_map = np.ascontiguousarray(dmap.cpu().numpy(), dtype=np.uint8)
            if not defect_map.any():
                return CameraResult(camera, w, h, [], defect_map)
            defects, found = find_defects(
                labels, scores, camera=camera, class_names=self.class_names,
                min_area_px=self.cfg.min_area_px, mm_per_px=mm_per_px,
                block=self.cfg.region_block, max_regions=self.cfg.max_regions,
                max_outline_points=self.cfg.outline_points,
            )
            capped = found > self.cfg.max_regions
            if capped:
                log.warning("defect regions capped", camera=camera, found=found,
                            examined=len(defects))
            return CameraResult(camera, w, h, defects, defect_map, regions_found=found,
                                capped=capped)

    def _head_fired(self, result: CameraResult) -> bool:
        """Whether the operating point's image-head rule fails this camera (and the head's
        location is wanted: ``pipeline.head_location``)."""
        op = self.operating_point
        return (self.cfg.head_location and op is not None and op.uses_head
                and op.head_threshold is not None and result.part_score is not None
                and result.part_score >= op.head_threshold and self._has_cells)

    def head_box(self, image: InputImage, calibration: CameraCalibration | None = None
                 ) -> tuple[int, int, int, int]:
        """Where the image head finds a defect in ``image`` (x, y, width, height): one more
        pass of the encoder over the frame, without flips (see :mod:`pipeline.locate`); the
        cells at the operating point's head threshold, or the strongest cell alone without
        one. ``ValueError`` for a model without an image head."""
        op = self.operating_point
        threshold = (op.head_threshold if op is not None and op.head_threshold is not None
                     else float("inf"))
        with torch.inference_mode():
            cells = head_cells(self.segmenter.model, self.preprocessor(image, calibration))
        h, w = image.pixels.shape[:2]
        return hot_spot(cells, threshold, h, w)[0]

    def _locate(self, result: CameraResult, image: InputImage,
                calibration: CameraCalibration | None) -> None:
        """Set ``result.part_box`` (:meth:`head_box`). Best effort: a failure is logged and
        leaves the box out; the verdict stands."""
        try:
            result.part_box = self.head_box(image, calibration)
        except (RuntimeError, ValueError, PipelineError) as exc:
            log.warning("image head location failed", camera=result.camera, error=str(exc))

    def inspect(
        self,
        images: Sequence[InputImage],
        calibration: Mapping[str, CameraCalibration] | None = None,
        mm_per_px: Mapping[str, float] | None = None,
    ) -> PipelineResult:
        """Defects and verdict for one frame per camera.

        Scale per camera: the calibration's ``mm_per_px`` when it has one, else ``mm_per_px``,
        else none (areas in px only, rules use ``min_area_px``).
        """
        if not images:
            raise PipelineError("inspect needs at least one image")
        names = [getattr(i, "camera", None) for i in images]
        if any(not isinstance(i, InputImage) for i in images):
            raise PipelineError("inspect takes pipeline.types.InputImage objects")
        if len(set(names)) != len(names):
            raise PipelineError(f"one image per camera, got cameras {names}")
        calibration = calibration or {}
        mm_per_px = mm_per_px or {}
        timings = {"preprocess": 0.0, "infer": 0.0, "postprocess": 0.0, "verdict": 0.0}
        results: list[CameraResult] = []
        with self._lock:
            start = self._sync()
            with torch_errors("upload of the frames", self.device, self._settings):
                self.preprocessor.prefetch(images)  # CUDA: every camera's copy under way
            for image in images:
                cal = calibration.get(image.camera)
                scale = (cal.mm_per_px if cal is not None and cal.mm_per_px else None) or \
                    mm_per_px.get(image.camera)
                clock = StageClock(self.device)
                with torch_errors(f"inference of camera {image.camera!r}", self.device,
                                  self._settings):
                    probs = self.probabilities(image, cal, clock)
                    t = clock.sync()
                    for k, v in clock.times_ms.items():
                        timings["preprocess" if k == "preprocess" else "infer"] += v
                    score, score_class = self.part_score()
                    result = self.postprocess(image.camera, probs, scale)
                    result.part_score, result.part_class = score, score_class
                    del probs
                timings["postprocess"] += (self._sync() - t) * 1000
                results.append(result)
            t = time.perf_counter()
            if self.operating_point is not None and self._op_rules is not None:
                verdict, reasons = judge_operating_point(results, self.operating_point,
                                                         self._op_rules)
            else:
                verdict, reasons = judge(results, self.rules)
            timings["verdict"] = (time.perf_counter() - t) * 1000
            fired = [r for r in results if self._head_fired(r)]
            if fired:  # only cameras the image head failed: no cost on good parts
                t = self._sync()
                by_camera = {i.camera: i for i in images}
                for r in fired:
                    self._locate(r, by_camera[r.camera], calibration.get(r.camera))
                timings["locate"] = (self._sync() - t) * 1000
            for r in results:
                if len(r.defects) > self.cfg.max_defects:
                    log.warning("defect list truncated", camera=r.camera, found=len(r.defects),
                                kept=self.cfg.max_defects)
                    del r.defects[self.cfg.max_defects:]
            timings["total"] = (self._sync() - start) * 1000
        return PipelineResult(
            verdict=verdict, reasons=reasons, cameras=results,
            timings_ms={k: round(v, 3) for k, v in timings.items()},
            operating_point=self.decision_id,
        )


__all__ = ["CheckpointError", "Inspector", "checkpoint_path"]
