"""Frames to files: ``station capture`` (lossless images with a JSON sidecar each, for
datasets) and ``station capture --preview`` (a downscaled live JPEG, rewritten in place, for
aiming the cameras)."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from config import StationConfig
from config.cameras import CameraConfig
from config.errors import CameraError
from drivers.frame import Frame
from station import __version__
from station.terminal import sigint_flag

EXIT_OK = 0


def to_display8(frame: Frame) -> npt.NDArray[np.uint8]:
    """8-bit BGR or grey for display: deep formats scaled down, Bayer shown as 2x2 means."""
    import cv2

    top = float((1 << frame.bits) - 1)
    img = np.asarray(frame.data, dtype=np.float32) * np.float32(255.0 / top)
    if frame.pixel_format.startswith("Bayer"):
        img = np.asarray(cv2.blur(img, (2, 2)), dtype=np.float32)
    out: npt.NDArray[np.uint8] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if out.ndim == 3:
        out = out[:, :, :3]
        if frame.pixel_format in ("RGB8", "RGBa8"):
            out = np.ascontiguousarray(out[:, :, ::-1])
    return out


def _lossless(frame: Frame) -> npt.NDArray[np.uint8] | npt.NDArray[np.uint16]:
    """Pixels as written to PNG/TIFF: raw samples (Bayer mosaic kept), colour in BGR order."""
    data = frame.data
    if data.ndim == 3 and frame.pixel_format in ("RGB8", "RGBa8"):
        order = [2, 1, 0] if frame.pixel_format == "RGB8" else [2, 1, 0, 3]
        return np.ascontiguousarray(data[:, :, order], dtype=np.uint8)
    return data


def frame_metadata(frame: Frame, cfg: StationConfig, calibration_id: str | None,
                   lights_on: bool, file: str) -> dict[str, Any]:
    """The JSON sidecar of one captured frame."""
    return {
        "file": file,
        "camera": frame.camera,
        "frame_id": frame.frame_id,
        "host_timestamp_ns": frame.host_timestamp_ns,
        "host_time": datetime.fromtimestamp(frame.host_timestamp_ns / 1e9, UTC).isoformat(),
        "device_timestamp_ns": frame.device_timestamp_ns,
        "pixel_format": frame.pixel_format,
        "bits": frame.bits,
        "width": frame.width,
        "height": frame.height,
        "exposure_us": frame.exposure_us,
        "gain_db": frame.gain_db,
        "complete": frame.complete,
        "source": frame.source,
        "extra": dict(frame.extra),
        "lights": "on" if lights_on else "off",
        "light_intensities": {c.name: c.intensity for c in cfg.lights.channels}
        if lights_on else {},
        "station": cfg.name,
        "calibration_id": calibration_id,
        "software": f"station {__version__}",
        "note": "pixels are the raw samples (Bayer: the mosaic); colour files are BGR as "
                "OpenCV writes them",
    }


def _open_rig(cfg: StationConfig, cameras: Sequence[CameraConfig]) -> Any:
    from drivers.cameras import CameraRig, open_camera

    rig = CameraRig([open_camera(c, cfg.base_dir) for c in cameras])
    rig.open()
    return rig


def capture(
    cfg: StationConfig, data_dir_path: Path, cameras: Sequence[CameraConfig], out: Path, *,
    count: int, lights_on: bool, fmt: str = "png", interval_s: float = 0.0,
) -> int:
    """Grab ``count`` frames from every camera into ``out`` (lossless + JSON sidecar)."""
    import cv2

    from drivers.lights import open_lights
    from station.calibration.store import load_calibration

    cal_id = load_calibration(cfg, data_dir_path).calibration_id
    out.mkdir(parents=True, exist_ok=True)
    lights = open_lights(cfg.lights) if lights_on and cfg.lights.backend != "none" else None
    rig = _open_rig(cfg, cameras)
    written = 0
    try:
        if lights is not None:
            lights.open()
        for i in range(count):
            if lights is not None:
                lights.on()
                time.sleep(cfg.lights.settle_ms / 1000.0)
            try:
                frames: list[Frame] = rig.acquire()
            finally:
                if lights is not None:
                    lights.off()
            for frame in frames:
                safe = re.sub(r"[^A-Za-z0-9_.-]", "_", frame.camera)
                stem = f"{safe}_{datetime.now(UTC):%Y%m%dT%H%M%S}_{i:05d}"
                name = f"{stem}.{fmt}"
                if not cv2.imwrite(str(out / name), _lossless(frame)):
                    raise CameraError(f"capture: OpenCV could not write {out / name}")
                meta = frame_metadata(frame, cfg, cal_id, lights is not None, name)
                (out / f"{stem}.json").write_text(json.dumps(meta, indent=2) + "\n",
                                                  encoding="utf-8")
                written += 1
            if interval_s and i + 1 < count:
                time.sleep(interval_s)
    finally:
        rig.close()
        if lights is not None:
            lights.close()
    print(f"captured {written} frame(s) from {len(cameras)} camera(s) into {out} "
          f"({fmt.upper()} + JSON sidecar each)")
    return EXIT_OK


def compose_preview(frames: Sequence[Frame], width: int) -> npt.NDArray[np.uint8]:
    """The frames side by side, labelled, scaled to ``width`` px in total (8-bit BGR)."""
    import cv2

    tile_w = max(16, width // max(1, len(frames)))
    tiles = []
    for frame in frames:
        img = to_display8(frame)
        if img.ndim == 2:
            img = np.asarray(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
        h = max(1, round(img.shape[0] * tile_w / img.shape[1]))
        tile = np.asarray(cv2.resize(img, (tile_w, h), interpolation=cv2.INTER_AREA),
                          dtype=np.uint8)
        cv2.putText(tile, frame.camera, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    height = max(t.shape[0] for t in tiles)
    padded = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    return np.ascontiguousarray(np.hstack(padded))


def preview(
    cfg: StationConfig, cameras: Sequence[CameraConfig], path: Path, *, lights_on: bool,
    duration_s: float, width: int, interval_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Rewrite ``path`` (JPEG) with the cameras' latest frames until ``duration_s`` (0: until
    Ctrl-C); the file is replaced atomically so a viewer never shows half an image."""
    import cv2

    from drivers.lights import open_lights

    path.parent.mkdir(parents=True, exist_ok=True)
    lights = open_lights(cfg.lights) if lights_on and cfg.lights.backend != "none" else None
    rig = _open_rig(cfg, cameras)
    updates = 0
    print(f"preview: writing {path} (open it in an image viewer that reloads); "
          f"{'until Ctrl-C' if duration_s == 0 else f'for {duration_s:g} s, Ctrl-C ends early'}")
    lit_at: float | None = None
    try:
        if lights is not None:
            lights.open()
        start = clock()
        with sigint_flag() as stop:
            while not stop[0] and (duration_s == 0 or clock() - start < duration_s):
                if lights is not None and (
                        lit_at is None or clock() - lit_at > 0.7 * cfg.lights.max_on_s):
                    lights.off()  # re-arm the luminaire guard, which counts from switch-on
                    lights.on()
                    lit_at = clock()
                    time.sleep(cfg.lights.settle_ms / 1000.0)
                frames = rig.acquire()
                ok, buf = cv2.imencode(".jpg", compose_preview(frames, width),
                                       [cv2.IMWRITE_JPEG_QUALITY, 85])
                if not ok:
                    raise CameraError("preview: OpenCV could not encode the JPEG")
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_bytes(buf.tobytes())
                os.replace(tmp, path)
                updates += 1
                if interval_s:
                    time.sleep(interval_s)
    finally:
        rig.close()
        if lights is not None:
            lights.close()
        with suppress(OSError):
            path.with_name(f".{path.name}.tmp").unlink(missing_ok=True)
    print(f"preview: {updates} update(s) of {path}")
    return EXIT_OK
