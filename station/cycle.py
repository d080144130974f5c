"""One inspection: lights on, grab every camera, lights off, pipeline, verdict header + maps.

Two stages, so that the daemon can run them on two threads (``station.stages``: part N+1 is
acquired while part N is inferred): :func:`acquire_part` (lights, cameras, or the frames a
line trigger delivered; checks; previews) -> :class:`Acquired` -> :func:`inspect_part`
(pipeline, verdict header, maps) -> :class:`Outcome`. :func:`run_cycle` runs both in turn.

Fail safe: only a complete, successful pass through every step is a PASS or FAIL; any
exception, incomplete frame or refused calibration makes the inspection ERROR with a reason.
The lights are switched off in a ``finally`` whatever happens, and an all-off the controller
did not confirm (``health().fault``) makes the inspection ERROR too (the booth is not safe;
the part is not inferred). Every lights fault of a cycle comes back as a ``lights_fault`` event in
``Outcome.events`` for the daemon to publish.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import structlog

from config import StationConfig
from config.errors import CameraError, LightError, StationError
from drivers.cameras.pairing import FrameSet
from drivers.frame import Frame
from drivers.lights.base import Luminaires
from pipeline.types import CameraCalibration, InputImage, PipelineResult
from station.messaging.wire import CameraOut, DefectOut, ModelOut, VerdictHeader

log = structlog.get_logger(__name__)


class Acquirer(Protocol):
    """What the cycle needs of the camera rig."""

    def acquire(self, timeout_s: float | None = None) -> list[Frame]:
        """One frame from every camera."""
        ...


class Inspects(Protocol):
    """What the cycle needs of the pipeline's Inspector."""

    @property
    def model_info(self) -> dict[str, object]:
        """model_id, trained, ..."""
        ...

    def inspect(
        self,
        images: Sequence[InputImage],
        calibration: Mapping[str, CameraCalibration] | None = None,
        mm_per_px: Mapping[str, float] | None = None,
    ) -> PipelineResult:
        """Defects and verdict for one set of frames."""
        ...


@dataclass
class CalibrationState:
    """What the cycle needs of the loaded calibration."""

    calibration_id: str | None = None
    cameras: dict[str, CameraCalibration] = field(default_factory=dict)
    refuse_reasons: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """The result of one cycle: the verdict header, one PNG per camera map, one downscaled
    JPEG per frame grabbed (``storage.preview_px``; kept, never published), and the events
    (kind, data) the cycle gives rise to (``lights_fault``)."""

    header: VerdictHeader
    maps: dict[str, bytes]
    previews: dict[str, bytes] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


_id_lock = threading.Lock()
_last_id_ms = 0


def new_inspection_id(now: datetime | None = None) -> str:
    """A sortable, unique id: UTC time to the millisecond plus 4 random hex digits.

    Without ``now``, ids of one process are strictly increasing: a second id in the same
    millisecond takes the next millisecond (the random digits alone, 1 in 65,536, did collide
    when a burst of verdicts was recorded, and the store refuses a repeated id)."""
    global _last_id_ms
    if now is None:
        with _id_lock:
            ms = max(int(time.time() * 1000), _last_id_ms + 1)
            _last_id_ms = ms
        now = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}-{secrets.token_hex(2)}"


def iso(ts: float) -> str:
    """A UNIX time as ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def encode_map(defect_map: npt.NDArray[np.uint8]) -> bytes:
    """A class-index map as an 8-bit greyscale PNG."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(defect_map, dtype=np.uint8))
    if not ok:
        raise StationError("PNG encoding of a defect map failed")
    return bytes(buf.tobytes())


def preview_jpeg(frame: Frame, long_side_px: int, quality: int = 85) -> bytes:
    """The frame as a JPEG whose long side is at most ``long_side_px`` (never upscaled).

    Bayer frames are binned 2 x 2 into colour first (cheap, no full-size demosaic); deep
    formats are shifted to 8 bits.
    """
    from pipeline.overlay import to_display
    from pipeline.preprocess import bayer_pattern

    px: npt.NDArray[Any] = frame.data
    pattern = bayer_pattern(frame.pixel_format)
    if pattern is not None:  # superpixels: one BGR pixel per 2 x 2 Bayer cell
        layout = {"BayerRG": "RGGB", "BayerGR": "GRBG", "BayerGB": "GBRG", "BayerBG": "BGGR"}
        h, w = px.shape[0] // 2 * 2, px.shape[1] // 2 * 2
        sites = [px[i // 2 : h : 2, i % 2 : w : 2] for i in range(4)]
        by = dict(zip(layout[pattern], sites, strict=True))  # only R and B are read from it
        g1, g2 = (s for c, s in zip(layout[pattern], sites, strict=True) if c == "G")
        green = ((g1.astype(np.uint32) + g2) >> 1).astype(px.dtype)
        px = np.dstack([by["B"], green, by["R"]])
        fmt = "BGR8"
    else:
        fmt = frame.pixel_format
    h, w = px.shape[:2]
    scale = min(1.0, long_side_px / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        px = cv2.resize(px, size, interpolation=cv2.INTER_AREA)
    if fmt == "BGR8" and px.dtype == np.uint16:
        px = (px >> max(frame.bits - 8, 0)).clip(0, 255).astype(np.uint8)
    bgr = to_display(InputImage(camera=frame.camera, pixels=px, pixel_format=fmt,
                                bits=8 if fmt == "BGR8" else frame.bits))
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise StationError(f"{frame.camera}: JPEG encoding of the frame preview failed")
    return bytes(buf.tobytes())


def frames_to_images(frames: Sequence[Frame]) -> list[InputImage]:
    """Validate frames and hand their pixels to the pipeline; incomplete frames raise."""
    images = []
    for frame in frames:
        if not frame.complete:
            raise CameraError(
                f"{frame.camera}: frame {frame.frame_id} is incomplete; an incomplete frame is "
                "never inspected"
            )
        frame.validate()
        images.append(
            InputImage(
                camera=frame.camera, pixels=frame.data, pixel_format=frame.pixel_format,
                bits=frame.bits,
            )
        )
    return images


def _reason(step: str, exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{step}: {text}"


def fault_reason(exc: Exception, inspection_id: str) -> str:
    """The ERROR reason for an exception raised by a step of the cycle (bugs logged)."""
    if isinstance(exc, LightError):
        return _reason("lights", exc)
    if isinstance(exc, CameraError):
        return _reason("cameras", exc)
    if isinstance(exc, StationError):
        return _reason(type(exc).__name__, exc)
    # a bug or a library failure: ERROR, never PASS
    log.error("inspection failed", inspection_id=inspection_id, exc_info=exc)
    return _reason(f"internal error ({type(exc).__name__})", exc)


@dataclass
class Acquired:
    """What the acquisition stage hands the inference stage: one part's frames, or why it
    has none that may be inspected (``images`` None and ``reasons`` say why)."""

    inspection_id: str
    part_id: str | None
    started: float  # UNIX time the cycle started (hardware trigger: the first frame arrived)
    t0: float  # time.perf_counter() at the same instant
    frames: list[Frame] = field(default_factory=list)
    images: list[InputImage] | None = None
    reasons: list[str] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    previews: dict[str, bytes] = field(default_factory=dict)


def _skew_ms(frames: Sequence[Frame], line: FrameSet | None, cameras: int) -> float | None:
    """Spread of the frames' host stamps [ms]: trigger instants (software), arrivals (line)."""
    if line is not None:
        return None if line.skew_ns is None else round(line.skew_ns / 1e6, 3)
    if len(frames) != cameras or not frames:
        return None
    stamps = [f.host_timestamp_ns for f in frames]
    return round((max(stamps) - min(stamps)) / 1e6, 3)


def acquire_part(
    cfg: StationConfig,
    inspection_id: str,
    part_id: str | None,
    lights: Luminaires | None,
    rig: Acquirer | None,
    calibration: CalibrationState,
    line: FrameSet | None = None,
) -> Acquired:
    """The acquisition stage of one part: lights on, grab every camera, lights off (in a
    ``finally``), frames checked, previews encoded; never raises (faults become reasons).

    ``line``: the frames a line trigger delivered (``cycle.trigger: hardware``), already
    paired; then nothing is switched or triggered, and a set that is not one whole part
    (``line.reason``: a missing partner, a skew beyond the window) is the part's ERROR.
    """
    if line is not None:
        started = line.first_arrival_ns / 1e9
        t0 = time.perf_counter() - max(0.0, time.time() - started)
    else:
        started, t0 = time.time(), time.perf_counter()
    part = Acquired(inspection_id=inspection_id, part_id=part_id, started=started, t0=t0)
    timings, reasons, events = part.timings, part.reasons, part.events

    def lights_fault(during: str, reason: str) -> None:
        events.append(("lights_fault", {
            "inspection_id": inspection_id, "part_id": part_id, "during": during,
            "reason": reason,
        }))

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round((now - since) * 1000, 3)
        return now

    try:
        if calibration.refuse_reasons:
            raise StationError("calibration: " + "; ".join(calibration.refuse_reasons))
        if line is not None:
            part.frames = list(line.frames)
            if line.reason:
                raise CameraError(line.reason)
            timings["pair_wait"] = round((time.perf_counter() - t0) * 1000, 3)
        else:
            if rig is None:
                raise CameraError("cameras are not open")
            t = time.perf_counter()
            lights_on = False
            try:
                if lights is not None:
                    try:
                        lights.on()  # a failure switches everything off again before it raises
                    except LightError as exc:
                        lights_fault("on", str(exc))
                        raise
                    lights_on = True
                    if cfg.lights.settle_ms:
                        time.sleep(cfg.lights.settle_ms / 1000)
                    t = lap("lights_on", t)
                part.frames = rig.acquire()
                t = lap("acquire", t)
            finally:
                if lights is not None:
                    if lights_on:
                        lights.off()  # never raises: whether it was confirmed is in health()
                        lap("lights_off", t)
                    fault = lights.health().fault
                    if fault:
                        when = " after the grab" if lights_on else ""
                        reasons.append(f"lights did not switch off{when}: {fault}")
                        lights_fault("off", fault)
        images = frames_to_images(part.frames)
        if not reasons:
            part.images = images
    except Exception as exc:
        reasons.append(fault_reason(exc, inspection_id))
    skew = _skew_ms(part.frames, line, len(cfg.cameras))
    if skew is not None:
        timings["skew"] = skew
    t = time.perf_counter()
    for grabbed in part.frames if cfg.storage.preview_px else []:
        if not grabbed.complete:
            continue
        try:
            part.previews[grabbed.camera] = preview_jpeg(grabbed, cfg.storage.preview_px)
        except Exception as exc:  # a preview is for people; its failure changes no verdict
            log.warning("frame preview failed", camera=grabbed.camera, error=str(exc))
    if part.previews:
        lap("preview", t)
    return part


def inspect_part(
    cfg: StationConfig, part: Acquired, inspector: Inspects, calibration: CalibrationState,
) -> Outcome:
    """The inference stage of one part: the pipeline on its frames (unless the acquisition
    stage already made it an ERROR), then the verdict header and maps; never raises."""
    timings = dict(part.timings)
    reasons = list(part.reasons)
    result: PipelineResult | None = None
    if not reasons and part.images is not None:
        try:
            mm = {c.name: c.mm_per_px for c in cfg.cameras if c.mm_per_px is not None}
            t = time.perf_counter()
            result = inspector.inspect(part.images, calibration.cameras or None, mm)
            timings["pipeline"] = round((time.perf_counter() - t) * 1000, 3)
            timings.update({f"pipeline.{k}": v for k, v in result.timings_ms.items()})
        except Exception as exc:
            reasons.append(fault_reason(exc, part.inspection_id))
    if reasons or result is None:
        verdict = "ERROR"
        reasons = reasons or ["internal error: the part has no frames and no reason"]
    else:
        verdict = result.verdict.value
        reasons = list(result.reasons)
    maps: dict[str, bytes] = {}
    cameras_out = []
    by_cam = {f.camera: f for f in part.frames}
    results = {r.camera: r for r in result.cameras} if result is not None else {}
    for cam in cfg.cameras:
        frame = by_cam.get(cam.name)
        res = results.get(cam.name)
        out = CameraOut(
            camera=cam.name,
            frame_id=frame.frame_id if frame else None,
            width=frame.width if frame else None,
            height=frame.height if frame else None,
            source=frame.source if frame else None,
            defects=[
                DefectOut(**{k: getattr(d, k) for k in DefectOut.model_fields})
                for d in (res.defects if res else [])
            ],
            part_score=res.part_score if res else None,
            part_class=res.part_class if res else None,
            part_box=res.part_box if res else None,
        )
        cameras_out.append(out)
        if res is not None and verdict != "ERROR":
            maps[cam.name] = encode_map(res.defect_map)
    info: dict[str, Any] = dict(inspector.model_info)
    header = VerdictHeader(
        station=cfg.name,
        inspection_id=part.inspection_id,
        part_id=part.part_id,
        verdict=verdict,
        reasons=reasons,
        started_at=iso(part.started),
        finished_at=iso(time.time()),
        duration_ms=round((time.perf_counter() - part.t0) * 1000, 3),
        timings_ms=timings,
        model=ModelOut(model_id=str(info.get("model_id")), trained=bool(info.get("trained")),
                       operating_point=str(info.get("operating_point") or "") or None),
        calibration_id=calibration.calibration_id,
        cameras=cameras_out,
        maps=list(maps),
        map_downscale=cfg.pipeline.defect_map_downscale,
    )
    return Outcome(header=header, maps=maps, previews=part.previews, events=part.events)


def run_cycle(
    cfg: StationConfig,
    inspection_id: str,
    part_id: str | None,
    lights: Luminaires | None,
    rig: Acquirer | None,
    inspector: Inspects,
    calibration: CalibrationState,
) -> Outcome:
    """Run one inspection, both stages one after the other; never raises for a fault of the
    booth (it becomes ERROR). The daemon runs the stages on two threads (``station.stages``)."""
    part = acquire_part(cfg, inspection_id, part_id, lights, rig, calibration)
    return inspect_part(cfg, part, inspector, calibration)


def error_outcome(
    cfg: StationConfig, inspection_id: str, part_id: str | None, reason: str,
    model_info: Mapping[str, object], calibration_id: str | None,
    started_at: str | None = None,
) -> Outcome:
    """An ERROR verdict for an inspection that never ran its cycle (aborted, timed out,
    interrupted by a restart: then ``started_at`` is when it was accepted)."""
    now = iso(time.time())
    return Outcome(
        header=VerdictHeader(
            station=cfg.name, inspection_id=inspection_id, part_id=part_id, verdict="ERROR",
            reasons=[reason], started_at=started_at or now, finished_at=now, duration_ms=0.0,
            timings_ms={},
            model=ModelOut(
                model_id=str(model_info.get("model_id")), trained=bool(model_info.get("trained")),
                operating_point=str(model_info.get("operating_point") or "") or None,
            ),
            calibration_id=calibration_id,
            cameras=[CameraOut(camera=c.name) for c in cfg.cameras],
            maps=[], map_downscale=cfg.pipeline.defect_map_downscale,
        ),
        maps={},
    )
