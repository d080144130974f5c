"""drivers.cameras._genapi: the GenApi feature rules, against a fake node map.

The fake has harvesters' genapi shape. Each node is plain data (interface, access, limits,
entries); what the device does with a write is a plain function ``device(value) -> stored``
(keep it, round it, refuse it), and access may be a plain function of the test's state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from config.errors import CameraFeatureError
from drivers.cameras._genapi import configure_trigger, read_exposure, read_feature, write_feature

INTEGER, BOOLEAN, COMMAND, FLOAT, STRING, ENUMERATION = 2, 3, 4, 5, 6, 9
NA, WO, RO, RW = 1, 2, 3, 4


def keep(value: Any) -> Any:
    """The device stores what it is given."""
    return value


class FakeNode:
    """One node: ``node.value`` and limits on the value side, ``node.node`` the INode side."""

    def __init__(self, name: str, interface: int, value: Any = None, *,
                 access: int | Callable[[], int] = RW, lo: Any = None, hi: Any = None,
                 inc: Any = None, unit: str = "", entries: tuple[str, ...] = (),
                 device: Callable[[Any], Any] = keep, feature: bool = True) -> None:
        self.name, self.principal_interface_type = name, interface
        self._value, self._access, self._device, self._feature = value, access, device, feature
        self._lo, self._hi, self._inc, self.unit, self.symbolics = lo, hi, inc, unit, entries
        self.node = self
        self.executed = 0

    # INode side
    def get_access_mode(self) -> int:
        return self._access() if callable(self._access) else self._access

    def is_feature(self) -> bool:
        return self._feature

    # value side
    @property
    def min(self) -> Any:
        if isinstance(self._lo, Exception):
            raise self._lo
        return self._lo

    @property
    def max(self) -> Any:
        return self._hi

    @property
    def inc(self) -> Any:
        return self._inc

    def has_inc(self) -> bool:
        return self._inc is not None

    @property
    def value(self) -> Any:
        if isinstance(self._value, Exception):
            raise self._value
        return self._value

    @value.setter
    def value(self, v: Any) -> None:
        self._value = self._device(v)

    def execute(self) -> None:
        self._device(True)
        self.executed += 1


class FakeNodeMap:
    """harvesters' node map shape over a dict of FakeNodes."""

    def __init__(self, *nodes: FakeNode) -> None:
        self._nodes = {n.name: n for n in nodes}

    def has_node(self, name: str) -> bool:
        return name in self._nodes

    def __getattr__(self, name: str) -> FakeNode:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._nodes[name]

    @property
    def nodes(self) -> Iterator[FakeNode]:
        return iter(self._nodes.values())


def integer(name: str, value: int, lo: int, hi: int, inc: int = 1, **kw: Any) -> FakeNode:
    """An IInteger node."""
    return FakeNode(name, INTEGER, value, lo=lo, hi=hi, inc=inc, **kw)


def floating(name: str, value: float, lo: float, hi: float, **kw: Any) -> FakeNode:
    """An IFloat node."""
    return FakeNode(name, FLOAT, value, lo=lo, hi=hi, **kw)


def enum(name: str, value: str, *entries: str, **kw: Any) -> FakeNode:
    """An IEnumeration node."""
    return FakeNode(name, ENUMERATION, value, entries=entries, **kw)


def camera_nodes(*extra: FakeNode) -> FakeNodeMap:
    """A small camera: size, format, exposure, gain, and whatever ``extra`` adds."""
    return FakeNodeMap(
        integer("Width", 1024, 16, 4096, 16), integer("Height", 768, 16, 3072, 2),
        enum("PixelFormat", "Mono8", "Mono8", "BayerRG8", "RGB8"),
        floating("ExposureTime", 5000.0, 10.0, 1e6, unit="us"),
        floating("Gain", 0.0, 0.0, 24.0, unit="dB"),
        *extra,
    )


def test_a_good_write_is_read_back() -> None:
    """In range, on the increment: written and the device's value returned; a whole float
    is a fine integer; enum, bool, string and float nodes take values of their type."""
    nm = camera_nodes(FakeNode("ReverseX", BOOLEAN, False),
                      FakeNode("DeviceUserID", STRING, ""))
    assert write_feature(nm, "cam0", "Width", 2048) == 2048
    assert write_feature(nm, "cam0", "Height", 1000.0) == 1000
    assert write_feature(nm, "cam0", "PixelFormat", "BayerRG8") == "BayerRG8"
    assert write_feature(nm, "cam0", "ReverseX", True) is True
    assert write_feature(nm, "cam0", "DeviceUserID", "left") == "left"
    assert write_feature(nm, "cam0", "ExposureTime", 20000) == 20000.0
    assert read_feature(nm, "cam0", "Width") == 2048


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("Width", 1000, "feature 'Width' = 1000: not on the increment; allowed 16 .. 4096, "
                        "increment 16"),
        ("Width", 8192, "feature 'Width' = 8192: out of range; allowed 16 .. 4096, increment 16"),
        ("Width", True, "feature 'Width' = True: needs an integer"),
        ("Width", 10.5, "feature 'Width' = 10.5: needs an integer"),
        ("Width", "wide", "feature 'Width' = 'wide': needs an integer"),
        ("ExposureTime", "long", "'ExposureTime' = 'long': needs a number; allowed 10 .. "
                                 "1e+06 [us]"),
        ("Gain", 30.0, "feature 'Gain' = 30.0: out of range; allowed 0 .. 24 [dB]"),
        ("PixelFormat", "Mono16", "'PixelFormat' = 'Mono16': not an entry of the enumeration; "
                                  "allowed: Mono8, BayerRG8, RGB8"),
        ("PixelFormat", 8, "not an entry of the enumeration"),
        ("Widht", 64, "the device has no node 'Widht'; did you mean Width, Height?"),
        ("Exposure", 1, "no node 'Exposure'; did you mean ExposureTime?"),
        ("Frobnicate", 1, "no node 'Frobnicate' (`station devices` names the model"),
    ],
)
def test_bad_values_name_node_value_rule_and_what_is_allowed(
    name: str, value: Any, message: str,
) -> None:
    """Every refusal is a CameraFeatureError naming the camera, the node, the value, the rule
    and what the node allows; nothing is written."""
    nm = camera_nodes()
    before = {n.name: n._value for n in nm.nodes}
    with pytest.raises(CameraFeatureError) as info:
        write_feature(nm, "cam0", name, value)
    assert str(info.value).startswith("camera cam0: feature ")
    assert message in str(info.value)
    assert {n.name: n._value for n in nm.nodes} == before


def test_access_modes_decide_what_may_be_read_and_written() -> None:
    """Read-only: not writable, with the TLParamsLocked hint; not available: not writable;
    write-only: written without read-back, and cannot be read."""
    nm = FakeNodeMap(integer("Locked", 1, 0, 9, access=RO), integer("Gone", 1, 0, 9, access=NA),
                     integer("Secret", 1, 0, 9, access=WO))
    with pytest.raises(CameraFeatureError, match=r"node is read-only \(RO\), not writable "
                       r"\(TLParamsLocked: set it before acquisition starts\); allowed 0 \.\. 9"):
        write_feature(nm, "c", "Locked", 2)
    with pytest.raises(CameraFeatureError, match=r"node is not available now \(NA\), not "
                       r"writable; allowed"):
        write_feature(nm, "c", "Gone", 2)
    assert write_feature(nm, "c", "Secret", 7) == 7
    with pytest.raises(CameraFeatureError, match=r"'Secret' cannot be read: node is write-only"):
        read_feature(nm, "c", "Secret")


def test_what_the_device_does_with_a_write_is_checked() -> None:
    """The device rounding a float within tolerance is fine; changing it more is named;
    refusing it (a genapi exception) is named with the exception."""
    def round_to_100(v: Any) -> Any:
        return float(round(v / 100) * 100)

    def refuse(v: Any) -> Any:
        raise ValueError("OutOfRangeException: the value is invalid now")

    nm = FakeNodeMap(floating("Fine", 1.0, 0.0, 1e6, device=lambda v: v * (1 + 1e-4)),
                     floating("Coarse", 100.0, 0.0, 1e6, device=round_to_100),
                     integer("Stubborn", 1, 0, 9, device=refuse))
    assert write_feature(nm, "c", "Fine", 1000.0) == pytest.approx(1000.1)
    with pytest.raises(CameraFeatureError, match=r"'Coarse' = 1234.0: read back 1200.0 "
                       r"\(the device changed it\)"):
        write_feature(nm, "c", "Coarse", 1234.0)
    with pytest.raises(CameraFeatureError, match=r"'Stubborn' = 3: the device refused it "
                       r"\(ValueError: OutOfRangeException: the value is invalid now\)"):
        write_feature(nm, "c", "Stubborn", 3)


def test_commands_execute_on_true_only() -> None:
    """A command node runs on ``true``; anything else is refused before it runs; a failing
    execute is named."""
    def fail(v: Any) -> Any:
        raise RuntimeError("device busy")

    nm = FakeNodeMap(FakeNode("TriggerSoftware", COMMAND, access=WO),
                     FakeNode("DeviceReset", COMMAND, access=WO, device=fail))
    assert write_feature(nm, "c", "TriggerSoftware", True) is True
    assert nm.TriggerSoftware.executed == 1
    with pytest.raises(CameraFeatureError, match=r"a command node takes true; a command: "
                       r"give true to execute it"):
        write_feature(nm, "c", "TriggerSoftware", 1)
    assert nm.TriggerSoftware.executed == 1
    with pytest.raises(CameraFeatureError, match=r"execute failed: device busy"):
        write_feature(nm, "c", "DeviceReset", True)


def test_unreadable_values_and_limits_are_named_not_raised_raw() -> None:
    """A value that throws on read, and limits that throw while a refusal is worded, both
    end in CameraFeatureError saying so; other node types cannot be set from the config."""
    nm = FakeNodeMap(integer("Temp", RuntimeError("no sensor"), 0, 99),
                     integer("Odd", 5, RuntimeError("min unreadable"), 9, access=RO),
                     FakeNode("Category", 8, None))
    with pytest.raises(CameraFeatureError, match=r"reading 'Temp' failed: no sensor"):
        read_feature(nm, "c", "Temp")
    with pytest.raises(CameraFeatureError, match=r"limits unreadable \(RuntimeError\)"):
        write_feature(nm, "c", "Odd", 1)
    with pytest.raises(CameraFeatureError, match=r"node type 8 cannot be set from the config; "
                       r"a value of its type"):
        write_feature(nm, "c", "Category", 1)


def trigger_nodes(*, software: bool, lines: tuple[str, ...] = ("Line0", "Line1")) -> FakeNodeMap:
    """Trigger nodes as a camera with (or without) a software trigger has them."""
    sources = (*lines, "Software") if software else lines
    nodes = [enum("TriggerSelector", "FrameStart", "FrameStart", "LineStart"),
             enum("TriggerMode", "Off", "Off", "On"), enum("TriggerSource", "Line0", *sources),
             enum("AcquisitionMode", "Continuous", "Continuous", "SingleFrame")]
    if software:
        nodes.append(FakeNode("TriggerSoftware", COMMAND, access=WO))
    return FakeNodeMap(*nodes)


def test_trigger_auto_probes_for_a_software_trigger() -> None:
    """auto: software when TriggerMode, TriggerSoftware and the Software source exist (and
    says so in the log), else single frame with the trigger off."""
    logs: list[tuple[str, str, dict[str, Any]]] = []

    def log(level: str, event: str, **fields: Any) -> None:
        logs.append((level, event, fields))

    nm = trigger_nodes(software=True)
    assert configure_trigger(nm, "cam0", "auto", "Line0", log) == "software"
    assert (nm.TriggerMode.value, nm.TriggerSource.value) == ("On", "Software")
    assert logs == [("info", "camera_trigger_probed",
                     {"camera": "cam0", "software_trigger": True, "chosen": "software"})]
    nm = trigger_nodes(software=False)
    assert configure_trigger(nm, "cam0", "auto", "Line0", log) == "single"
    assert (nm.TriggerMode.value, nm.AcquisitionMode.value) == ("Off", "SingleFrame")


def test_trigger_modes_the_device_lacks_are_refused_with_the_way_out() -> None:
    """software without the nodes, hardware on a line the device does not have, hardware
    without trigger nodes: CameraFeatureError naming what is missing."""
    def log(level: str, event: str, **fields: Any) -> None:
        pass

    with pytest.raises(CameraFeatureError, match=r"trigger 'software' needs the nodes "
                       r"TriggerMode, TriggerSource \(entry Software\) and TriggerSoftware"):
        configure_trigger(trigger_nodes(software=False), "cam0", "software", "Line0", log)
    with pytest.raises(CameraFeatureError, match=r"'TriggerSource' = 'Line3': not an entry; "
                       r"allowed: Line0, Line1, Software"):
        configure_trigger(trigger_nodes(software=True), "cam0", "hardware", "Line3", log)
    with pytest.raises(CameraFeatureError, match=r"trigger 'hardware' needs the nodes "
                       r"TriggerMode and TriggerSource"):
        configure_trigger(camera_nodes(), "cam0", "hardware", "Line0", log)
    nm = trigger_nodes(software=True)
    assert configure_trigger(nm, "cam0", "hardware", "Line1", log) == "hardware"
    assert (nm.TriggerMode.value, nm.TriggerSource.value) == ("On", "Line1")


def test_exposure_and_gain_are_read_where_the_device_has_them() -> None:
    """ExposureTime, else ExposureTimeAbs (older SFNC); None where there is no readable node."""
    assert read_exposure(camera_nodes()) == (5000.0, 0.0)
    older = FakeNodeMap(floating("ExposureTime", RuntimeError("NI"), 0.0, 1.0),
                        floating("ExposureTimeAbs", 800.0, 0.0, 1e6))
    assert read_exposure(older) == (800.0, None)
    assert read_exposure(FakeNodeMap(floating("Gain", RuntimeError("NA"), 0.0, 1.0))) == (
        None, None)
