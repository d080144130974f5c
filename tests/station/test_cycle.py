"""Tests of station.cycle: the frame previews (the JPEGs the store keeps for the HMI) and
the two stages of an inspection, acquire_part and inspect_part, with the real model, replay
cameras and in-memory lights."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from config import load_config
from config.errors import PipelineError
from drivers.cameras import CameraRig, open_camera
from drivers.cameras.pairing import FrameSet
from drivers.frame import Frame
from pipeline import Inspector
from station.cycle import (
    CalibrationState,
    acquire_part,
    inspect_part,
    new_inspection_id,
    preview_jpeg,
)
from station.testing import FakeLights


def _frame(data: np.ndarray, fmt: str) -> Frame:
    return Frame(camera="cam0", frame_id=1, host_timestamp_ns=0, pixel_format=fmt, data=data)


def _decode(jpeg: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_preview_is_downscaled_to_the_long_side_keeping_the_aspect() -> None:
    """A 3000 x 2000 mono frame becomes a 1024 x 683 JPEG; a small one is never enlarged."""
    big = _decode(preview_jpeg(_frame(np.full((2000, 3000), 90, np.uint8), "Mono8"), 1024))
    assert big.shape[:2] == (683, 1024) and abs(int(big[300, 500, 0]) - 90) <= 2
    small = _decode(preview_jpeg(_frame(np.zeros((100, 60), np.uint8), "Mono8"), 1024))
    assert small.shape[:2] == (100, 60)


def test_bayer_preview_is_in_colour() -> None:
    """A BayerRG8 frame with only its red sites lit gives a red preview (2 x 2 binned)."""
    mosaic = np.zeros((400, 600), np.uint8)
    mosaic[0::2, 0::2] = 220
    img = _decode(preview_jpeg(_frame(mosaic, "BayerRG8"), 150))
    assert img.shape[:2] == (100, 150)
    b, g, r = (int(v) for v in img[50, 75])
    assert r > 180 and g < 40 and b < 40


def test_deep_bayer_and_mono_previews_are_8_bit() -> None:
    """12-bit frames are shifted to 8 bits: full scale is white."""
    mono = _decode(preview_jpeg(_frame(np.full((64, 64), 4095, np.uint16), "Mono12"), 32))
    assert int(mono.min()) >= 250
    bayer = _decode(preview_jpeg(_frame(np.full((64, 64), 4095, np.uint16), "BayerGB12"), 32))
    assert bayer.shape[:2] == (32, 32) and int(bayer.min()) >= 250


# --- the two stages: acquire_part, inspect_part --------------------------------------------

CFG = load_config("default", ["lights.settle_ms=0"], env={})


class Recording:
    """An Inspects that runs the real Inspector, counting calls (or raising ``fail``)."""

    def __init__(self, inner: Inspector, fail: Exception | None = None) -> None:
        self.inner, self.fail, self.calls = inner, fail, 0

    @property
    def model_info(self) -> dict[str, object]:
        return self.inner.model_info

    def inspect(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return self.inner.inspect(*args, **kwargs)


@pytest.fixture(scope="module")
def inspector() -> Inspector:
    """The shipped model, loaded once for this module."""
    return Inspector.from_config(CFG)


@pytest.fixture
def rig() -> Iterator[CameraRig]:
    """The default config's two replay cameras."""
    r = CameraRig([open_camera(c, CFG.base_dir) for c in CFG.cameras])
    r.open()
    yield r
    r.close()


class LeakyLights(FakeLights):
    """Lights whose all-off the controller never confirms."""

    def health(self) -> Any:
        import dataclasses

        return dataclasses.replace(super().health(), fault="all-off not confirmed")


def test_the_two_stages_make_one_inspection(rig: CameraRig, inspector: Inspector) -> None:
    """acquire_part switches the lights around the grab and times every step, the skew
    included; inspect_part judges the frames; the lights end off."""
    lights = FakeLights({1: 200})
    part = acquire_part(CFG, "i1", "P1", lights, rig, CalibrationState())
    assert part.reasons == [] and part.images is not None and len(part.images) == 2
    assert {"lights_on", "acquire", "lights_off", "skew", "preview"} <= set(part.timings)
    assert lights.calls[0] == "on" and "off" in lights.calls and not lights.lit
    out = inspect_part(CFG, part, Recording(inspector), CalibrationState())
    assert out.header.verdict in ("PASS", "FAIL") and out.header.part_id == "P1"
    assert "pipeline" in out.header.timings_ms and set(out.maps) == {"cam0", "cam1"}
    assert set(out.previews) == {"cam0", "cam1"}


def test_an_acquisition_fault_is_an_error_never_inferred(rig: CameraRig,
                                                         inspector: Inspector) -> None:
    """Lights that did not confirm off after the grab: ERROR naming them, a lights_fault
    event, and the part is not inferred (nor is one without cameras)."""
    part = acquire_part(CFG, "i2", None, LeakyLights(), rig, CalibrationState())
    assert part.images is None
    assert part.reasons == ["lights did not switch off after the grab: all-off not confirmed"]
    assert [k for k, _ in part.events] == ["lights_fault"]
    counting = Recording(inspector)
    out = inspect_part(CFG, part, counting, CalibrationState())
    assert out.header.verdict == "ERROR" and counting.calls == 0 and out.maps == {}
    assert out.header.cameras[0].frame_id is not None  # the frames that were grabbed
    none = acquire_part(CFG, "i3", None, None, None, CalibrationState())
    assert none.reasons == ["cameras: cameras are not open"]


def test_a_pipeline_fault_is_an_error_with_its_reason(rig: CameraRig,
                                                      inspector: Inspector) -> None:
    """The pipeline raising makes the part ERROR with the exception's class and text."""
    part = acquire_part(CFG, "i4", None, None, rig, CalibrationState())
    out = inspect_part(CFG, part, Recording(inspector, PipelineError("bad frame")),
                       CalibrationState())
    assert out.header.verdict == "ERROR" and out.header.reasons == ["PipelineError: bad frame"]
    crash = inspect_part(CFG, part, Recording(inspector, KeyError("x")), CalibrationState())
    assert crash.header.reasons == ["internal error (KeyError): 'x'"]


def _line_set(rig: CameraRig, reason: str | None, skew_ns: int | None) -> FrameSet:
    frames = rig.acquire()
    return FrameSet(frames=frames if reason is None else frames[:1],
                    first_arrival_ns=frames[0].host_timestamp_ns, skew_ns=skew_ns,
                    reason=reason)


def test_a_line_set_is_inspected_without_lights_and_keeps_its_skew(
        rig: CameraRig, inspector: Inspector) -> None:
    """Frames a line delivered: no lights switched, no grab, the pairing's skew recorded,
    the cycle started when the first frame arrived."""
    lights = FakeLights()
    fs = _line_set(rig, None, 2_500_000)
    part = acquire_part(CFG, "i5", None, lights, None, CalibrationState(), line=fs)
    assert lights.calls == [] and part.images is not None
    assert part.timings["skew"] == 2.5 and "pair_wait" in part.timings
    assert part.started == fs.first_arrival_ns / 1e9
    out = inspect_part(CFG, part, Recording(inspector), CalibrationState())
    assert out.header.verdict in ("PASS", "FAIL") and out.header.timings_ms["skew"] == 2.5


def test_a_line_set_with_a_missing_partner_is_an_error(rig: CameraRig,
                                                       inspector: Inspector) -> None:
    """A set the pairer could not complete is ERROR with its reason; the frame that came is
    listed, the missing camera's entry has no frame."""
    fs = _line_set(rig, "missing partner: no frame from cam1", None)
    part = acquire_part(CFG, "i6", None, None, None, CalibrationState(), line=fs)
    counting = Recording(inspector)
    out = inspect_part(CFG, part, counting, CalibrationState())
    assert out.header.reasons == ["cameras: missing partner: no frame from cam1"]
    assert counting.calls == 0 and "skew" not in out.header.timings_ms
    assert [c.frame_id is not None for c in out.header.cameras] == [True, False]
    assert Path(str(out.header.cameras[0].source)).suffix == ".jpg"


def test_inspection_ids_of_a_burst_are_unique_and_in_order() -> None:
    """Thousands of ids in a tight loop (many per millisecond): all different and sorted as
    made (the 4 random digits alone once collided in a burst, and the store refuses a
    repeated id); the format stays time-to-the-millisecond, a dash, 4 hex digits."""
    import re
    from datetime import UTC, datetime

    ids = [new_inspection_id() for _ in range(3000)]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    assert all(re.fullmatch(r"\d{8}T\d{9}-[0-9a-f]{4}", i) for i in ids)
    fixed = datetime(2026, 12, 1, 10, 42, 11, 921_500, tzinfo=UTC)
    assert new_inspection_id(fixed).startswith("20261201T104211921-")
