"""One inspection: lights on, grab every camera, lights off, pipeline, verdict header + maps.

Fail safe: only a complete, successful pass through every step is a PASS or FAIL; any
exception, incomplete frame or refused calibration makes the inspection ERROR with a reason.
The lights are switched off in a ``finally`` whatever happens, and an all-off the controller
did not confirm (``health().fault``) makes the inspection ERROR too: the part was judged, but
the booth is not safe. Every lights fault of a cycle comes back as a ``lights_fault`` event in
``Outcome.events`` for the daemon to publish.
"""

from __future__ import annotations

import secrets
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


def new_inspection_id(now: datetime | None = None) -> str:
    """A sortable, unique id: UTC time to the millisecond plus 4 random hex digits."""
    now = now or datetime.now(UTC)
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


def run_cycle(
    cfg: StationConfig,
    inspection_id: str,
    part_id: str | None,
    lights: Luminaires | None,
    rig: Acquirer | None,
    inspector: Inspects,
    calibration: CalibrationState,
) -> Outcome:
    """Run one inspection; never raises for a fault of the booth (it becomes ERROR)."""
    started = time.time()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    reasons: list[str] = []
    events: list[tuple[str, dict[str, Any]]] = []
    frames: list[Frame] = []
    result: PipelineResult | None = None

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
            frames = rig.acquire()
            t = lap("acquire", t)
        finally:
            if lights is not None:
                if lights_on:
                    lights.off()  # never raises: whether it was confirmed is in health()
                fault = lights.health().fault
                if fault:
                    when = " after the grab" if lights_on else ""
                    reasons.append(f"lights did not switch off{when}: {fault}")
                    lights_fault("off", fault)
        images = frames_to_images(frames)
        mm = {c.name: c.mm_per_px for c in cfg.cameras if c.mm_per_px is not None}
        t = time.perf_counter()
        result = inspector.inspect(images, calibration.cameras or None, mm)
        lap("pipeline", t)
        timings.update({f"pipeline.{k}": v for k, v in result.timings_ms.items()})
    except LightError as exc:
        reasons.append(_reason("lights", exc))
    except CameraError as exc:
        reasons.append(_reason("cameras", exc))
    except StationError as exc:
        reasons.append(_reason(type(exc).__name__, exc))
    except Exception as exc:  # a bug or a library failure: ERROR, never PASS
        log.exception("inspection failed", inspection_id=inspection_id)
        reasons.append(_reason(f"internal error ({type(exc).__name__})", exc))

    if reasons or result is None:
        verdict = "ERROR"
    else:
        verdict = result.verdict.value
        reasons = list(result.reasons)
    previews: dict[str, bytes] = {}
    t = time.perf_counter()
    for grabbed in frames if cfg.storage.preview_px else []:
        if not grabbed.complete:
            continue
        try:
            previews[grabbed.camera] = preview_jpeg(grabbed, cfg.storage.preview_px)
        except Exception as exc:  # a preview is for people; its failure changes no verdict
            log.warning("frame preview failed", camera=grabbed.camera, error=str(exc))
    if previews:
        lap("preview", t)
    maps: dict[str, bytes] = {}
    cameras_out = []
    by_cam = {f.camera: f for f in frames}
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
        )
        cameras_out.append(out)
        if res is not None and verdict != "ERROR":
            maps[cam.name] = encode_map(res.defect_map)
    info: dict[str, Any] = dict(inspector.model_info)
    header = VerdictHeader(
        station=cfg.name,
        inspection_id=inspection_id,
        part_id=part_id,
        verdict=verdict,
        reasons=reasons,
        started_at=iso(started),
        finished_at=iso(time.time()),
        duration_ms=round((time.perf_counter() - t0) * 1000, 3),
        timings_ms=timings,
        model=ModelOut(model_id=str(info.get("model_id")), trained=bool(info.get("trained")),
                       operating_point=str(info.get("operating_point") or "") or None),
        calibration_id=calibration.calibration_id,
        cameras=cameras_out,
        maps=list(maps),
        map_downscale=cfg.pipeline.defect_map_downscale,
    )
    return Outcome(header=header, maps=maps, previews=previews, events=events)


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
