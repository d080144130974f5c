"""Builders of realistic verdicts and a real store for the HMI's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from station.messaging.wire import VerdictHeader
from station.store import Store

T0 = datetime(2026, 11, 22, 5, 30, tzinfo=UTC)  # 06:30 in Europe/Berlin (winter time)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


def defect(camera: str = "cam0", name: str = "Crack", index: int = 2, area_mm2: float = 12.0,
           score: float = 0.99, x: int = 40, y: int = 30, size: int = 20) -> dict[str, Any]:
    return {
        "camera": camera, "class_name": name, "class_index": index,
        "area_px": size * size, "area_mm2": area_mm2, "box": [x, y, size, size],
        "centroid": [x + size / 2, y + size / 2], "mean_score": score - 0.05,
        "max_score": score,
        "outline": [[x, y], [x + size, y], [x + size, y + size], [x, y + size]],
    }


def header(i: int, verdict: str = "PASS", when: datetime = T0, part: str | None = None,
           defects: list[dict[str, Any]] | None = None, duration_ms: float = 400.0,
           reasons: list[str] | None = None, maps: bool = True) -> dict[str, Any]:
    """A verdict header as the daemon publishes it (validated against the wire schema)."""
    defects = defects or []
    cams = []
    for cam in ("cam0", "cam1"):
        cams.append({
            "camera": cam, "frame_id": i, "width": None if verdict == "ERROR" else 320,
            "height": None if verdict == "ERROR" else 240, "source": None,
            "defects": [d for d in defects if d["camera"] == cam],
        })
    h = {
        "schema": 1, "topic": "verdict", "station": "test-station",
        "inspection_id": f"20261122T{i:06d}000-ab{i % 100:02d}",
        "part_id": part if part is not None else f"P-{i:04d}",
        "verdict": verdict,
        "reasons": reasons if reasons is not None else (
            ["cameras: cam1 timed out"] if verdict == "ERROR" else
            [f"{d['class_name']} {d['area_mm2']} mm2 on {d['camera']}" for d in defects]
            if verdict == "FAIL" else []),
        "started_at": iso(when), "finished_at": iso(when + timedelta(milliseconds=duration_ms)),
        "duration_ms": duration_ms, "timings_ms": {"acquire": 10.0},
        "model": {"model_id": "unet@abc", "trained": True}, "calibration_id": "cal-1",
        "cameras": cams, "maps": [] if verdict == "ERROR" or not maps else ["cam0", "cam1"],
        "map_downscale": 4,
    }
    VerdictHeader.model_validate(h)
    return h


def record(store: Store, h: dict[str, Any], previews: bool = True) -> None:
    """Store an inspection as the daemon does: maps, previews, then the row."""
    paths = {}
    for cam in h["maps"]:
        dmap = np.zeros((60, 80), np.uint8)
        for d in h["cameras"][0 if cam == "cam0" else 1]["defects"]:
            x, y, w, hh = (v // 4 for v in d["box"])
            dmap[y:y + hh, x:x + w] = d["class_index"]
        _, png = cv2.imencode(".png", dmap)
        paths[cam] = store.write_map(h["inspection_id"], h["started_at"], cam, png.tobytes())
    if previews and h["verdict"] != "ERROR":
        for cam in ("cam0", "cam1"):
            _, jpg = cv2.imencode(".jpg", np.full((240, 320, 3), 100, np.uint8))
            store.write_map(h["inspection_id"], h["started_at"], cam, jpg.tobytes(), ".jpg")
    store.record(h, paths)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    """A real store in a temporary data directory."""
    s = Store(tmp_path / "data")
    yield s
    s.close()
