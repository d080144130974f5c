"""drivers.cameras._session: what every camera session shares, on a fake device.

The device is the fake node map of test_cameras_genapi; the backend part of the session is a
small subclass whose stream and device steps append to a list (plain functions), so the
order of start, stop and close is what the tests read.
"""

from __future__ import annotations

from typing import Any

import pytest

from config.errors import CameraFeatureError, CameraNotFound, PixelFormatError
from drivers.cameras._session import Session, Sink, select_device
from tests.drivers.test_cameras_genapi import (
    COMMAND,
    RO,
    RW,
    WO,
    FakeNode,
    FakeNodeMap,
    enum,
    floating,
    integer,
)


class FakeSession(Session):
    """A session over a FakeNodeMap; ``steps`` records what it did to the device."""

    def __init__(self, nm: FakeNodeMap, fail: frozenset[str] = frozenset()) -> None:
        self.logs: list[tuple[str, str, dict[str, Any]]] = []
        super().__init__(lambda level, event, **f: self.logs.append((level, event, f)))
        self.nm, self.fail, self.steps = nm, fail, list[str]()
        self.opened = False

    def _step(self, name: str) -> None:
        self.steps.append(name)
        if name in self.fail:
            raise RuntimeError(f"{name} failed")

    def open(self, spec: dict[str, Any]) -> dict[str, Any]:
        self.name, self.opened = str(spec["name"]), True
        self.info = {"serial_number": "SN1"}
        return self._configure(self.nm, spec["genicam"])

    def trigger(self) -> None:
        self._step("trigger")

    def grab(self, timeout_s: float, sink: Sink) -> dict[str, Any]:
        return self._stamp({"extra": {}}, 123)

    def _node_map(self) -> Any:
        return self.nm

    @property
    def _device_open(self) -> bool:
        return self.opened

    def _start_stream(self) -> None:
        self._step("start")

    def _stop_stream(self) -> None:
        self._step("stop")

    def _close_device(self) -> None:
        self._step("close")
        self.opened = False

    def _release(self) -> None:
        self._step("release")


def device(streaming: list[bool] | None = None, software: bool = True) -> FakeNodeMap:
    """A camera whose Width is locked (read-only) while ``streaming[0]`` is true."""
    state = streaming if streaming is not None else [False]
    sources = ("Line0", "Software") if software else ("Line0",)
    nodes = [integer("Width", 1024, 16, 4096, 16, access=lambda: RO if state[0] else RW),
             enum("PixelFormat", "Mono8", "Mono8", "BayerRG8", "Mono12p"),
             floating("ExposureTime", 5000.0, 10.0, 1e6), floating("Gain", 1.5, 0.0, 24.0),
             enum("TriggerMode", "Off", "Off", "On"), enum("TriggerSource", "Line0", *sources)]
    if software:
        nodes.append(FakeNode("TriggerSoftware", COMMAND, access=WO))
    return FakeNodeMap(*nodes)


def test_open_applies_features_in_order_picks_the_trigger_and_starts() -> None:
    """Features are written in the config's order (each logged with its read-back), the
    software trigger is chosen, the stream started once, and open reports it all."""
    s = FakeSession(device())
    info = s.open({"name": "cam0", "genicam": {"features": {"ExposureTime": 800,
                                                             "PixelFormat": "BayerRG8"}}})
    applied = [f["node"] for _, e, f in s.logs if e == "camera_feature_applied"]
    assert applied == ["ExposureTime", "PixelFormat"]
    assert info == {"serial_number": "SN1", "mode": "software", "pixel_format": "BayerRG8",
                    "exposure_us": 800.0, "gain_db": 1.5}
    assert s.steps == ["start"]


def test_a_format_the_station_cannot_read_is_refused_at_open() -> None:
    """A packed format the pixel conversions do not know: PixelFormatError naming the camera,
    and no stream is started."""
    s = FakeSession(device())
    with pytest.raises(PixelFormatError, match=r"^camera cam0: .*Mono12p"):
        s.open({"name": "cam0", "genicam": {"features": {"PixelFormat": "Mono12p"}}})
    assert s.steps == []


def test_a_locked_node_gets_acquisition_stopped_around_the_write() -> None:
    """Width is read-only while streaming: set stops the stream, writes, starts it again;
    with acquisition stopped the same refusal is raised as it is."""
    streaming = [False]
    s = FakeSession(device(streaming))
    s.open({"name": "cam0", "genicam": {"trigger": "software"}})

    def start() -> None:
        s.steps.append("start")
        streaming[0] = True

    def stop() -> None:
        s.steps.append("stop")
        streaming[0] = False

    s._start_stream, s._stop_stream = start, stop  # type: ignore[method-assign]
    streaming[0] = True
    assert s.set("Width", 2048) == 2048
    assert s.steps == ["start", "stop", "start"] and streaming[0]
    s.mode = "single"
    s._stop()
    streaming[0] = True  # locked for another reason, nothing acquiring
    with pytest.raises(CameraFeatureError, match=r"'Width' = 64: node is read-only"):
        s.set("Width", 64)


def test_set_pixel_format_is_tracked_in_pfnc_spelling() -> None:
    """After a PixelFormat write the session's format is the PFNC name the backend maps to,
    and the differing-format warning may fire again."""
    s = FakeSession(device())
    s.open({"name": "cam0", "genicam": {}})
    s._format_warned = True
    s._pfnc = lambda name: {"BayerRG8": "BayerRG8 (pfnc)"}.get(name, name)  # type: ignore[method-assign]
    s.set("PixelFormat", "BayerRG8")
    assert (s._pixel_format, s._format_warned) == ("BayerRG8 (pfnc)", False)
    assert s.get("PixelFormat") == "BayerRG8"


def test_close_runs_every_step_even_when_one_fails() -> None:
    """Stop, close the device, release: a failing step is logged and the rest still run;
    close never raises, and a second close does not stop or close again."""
    s = FakeSession(device(), fail=frozenset({"stop"}))
    s.open({"name": "cam0", "genicam": {}})
    s.close()
    assert s.steps == ["start", "stop", "close", "release"]
    assert [(lv, e, f["error"]) for lv, e, f in s.logs if lv == "warning"] == [
        ("warning", "camera_worker_close_step_failed", "stop failed")]
    s.close()
    assert s.steps[-2:] == ["close", "release"] and s.steps.count("stop") == 1


def test_host_clock_is_the_trigger_unless_a_hardware_line_fired() -> None:
    """Software/single: the frame's host time is the trigger call; hardware: its arrival."""
    s = FakeSession(device())
    s._triggered_ns = 100
    assert s.grab(1.0, lambda n: memoryview(bytearray(n)))["host_timestamp_ns"] == 100
    s.mode = "hardware"
    meta = s.grab(1.0, lambda n: memoryview(bytearray(n)))
    assert meta["host_timestamp_ns"] == 123
    assert meta["extra"] == {"arrival_ns": "123", "host_clock": "arrival"}


DEVICES = [
    {"serial_number": "A1", "id": "dev0", "user_defined_name": "left", "vendor": "V",
     "model": "M"},
    {"serial_number": "B2", "id": "dev1", "user_defined_name": "right", "vendor": "V",
     "model": "M"},
]


def test_devices_are_selected_by_serial_name_id_or_index() -> None:
    """Each selector finds its device; selectors combine; one device needs none."""
    assert select_device(DEVICES, "c", {"serial_number": "B2"}, ["p.cti"]) == 1
    assert select_device(DEVICES, "c", {"user_defined_name": "left"}, ["p.cti"]) == 0
    assert select_device(DEVICES, "c", {"device_id": "dev1", "index": 1}, ["p.cti"]) == 1
    assert select_device(DEVICES, "c", {"index": 0}, ["p.cti"]) == 0
    assert select_device(DEVICES[:1], "c", {}, ["p.cti"]) == 0


@pytest.mark.parametrize(
    ("selectors", "message"),
    [
        ({"serial_number": "Z9"}, "camera c: no device with serial_number='Z9'; 2 device(s) "
                                  "seen by p.cti: [0] serial 'A1' id 'dev0' name 'left' (V M); "
                                  "[1] serial 'B2'"),
        ({"serial_number": "A1", "index": 1}, "no device with serial_number='A1'"),
        ({"index": 5}, "camera c: no device at index 5; 2 device(s)"),
        ({}, "no selector (serial_number, user_defined_name, device_id or index) and 2 "
             "device(s)"),
    ],
)
def test_selection_errors_list_what_the_producers_see(
    selectors: dict[str, Any], message: str,
) -> None:
    """No match, an index past the end, or two devices and no selector: CameraNotFound
    listing every device seen."""
    with pytest.raises(CameraNotFound) as info:
        select_device(DEVICES, "c", selectors, ["p.cti"])
    assert message in str(info.value)
