"""GenApi feature logic: pure functions of a node map, shared by every camera session.

A node map is anything with harvesters' genapi shape: ``has_node(name)``, the node as an
attribute (``node_map.Width``) with ``value`` (read/write), ``min``/``max``/``inc``/
``has_inc()``/``unit``, ``symbolics`` and ``execute()``, and its ``node`` (the INode:
``get_access_mode()``, ``principal_interface_type``, ``name``, ``is_feature()``), plus
``nodes`` to list them. harvesters' node map has it; ``_pylon`` dresses pypylon's in it; the
tests feed a fake one. Nothing here imports a vendor package or keeps state, so every rule
(access, type, range, increment, enum entry, read-back) is written and tested once.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any

from config.errors import CameraFeatureError

FeatureValue = bool | int | float | str
#: ``log(level, event, **fields)``: the worker forwards it to the station's structlog.
LogFn = Callable[..., None]

_ACCESS_NAMES = {0: "not implemented (NI)", 1: "not available now (NA)", 2: "write-only (WO)",
                 3: "read-only (RO)", 4: "read/write (RW)"}
_INTF_INTEGER, _INTF_BOOLEAN, _INTF_COMMAND, _INTF_FLOAT = 2, 3, 4, 5
_INTF_STRING, _INTF_ENUMERATION = 6, 9


def _allowed(node: Any) -> str:
    """What a node accepts, in words: range and increment, or enum entries."""
    try:
        intf = node.node.principal_interface_type
        if intf == _INTF_INTEGER:
            return f"allowed {node.min} .. {node.max}, increment {node.inc}"
        if intf == _INTF_FLOAT:
            inc = f", increment {node.inc:g}" if node.has_inc() else ""
            unit = f" [{node.unit}]" if getattr(node, "unit", "") else ""
            return f"allowed {node.min:g} .. {node.max:g}{inc}{unit}"
        if intf == _INTF_ENUMERATION:
            return f"allowed: {', '.join(node.symbolics)}"
        if intf == _INTF_BOOLEAN:
            return "allowed: true, false"
        if intf == _INTF_COMMAND:
            return "a command: give true to execute it"
        if intf == _INTF_STRING:
            return "a string"
    except Exception as exc:  # the node's limits may themselves be unreadable
        return f"limits unreadable ({type(exc).__name__})"
    return "a value of its type"


def _feature_names(node_map: Any) -> list[str]:
    names: list[str] = []
    for n in node_map.nodes:
        try:
            if n.node.is_feature():
                names.append(n.node.name)
        except Exception:
            continue
    return names


def _node(node_map: Any, camera: str, name: str, value: object) -> Any:
    if not node_map.has_node(name):
        close = difflib.get_close_matches(name, _feature_names(node_map), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise CameraFeatureError(
            f"camera {camera}: feature {name!r} = {value!r}: the device has no node {name!r}"
            f"{hint} (`station devices` names the model; its manual lists the nodes)"
        )
    return getattr(node_map, name)


def read_feature(node_map: Any, camera: str, name: str) -> FeatureValue:
    """Read one node's value; ``CameraFeatureError`` names it when it cannot be read."""
    node = _node(node_map, camera, name, "?")
    access = int(node.node.get_access_mode())
    if access not in (3, 4):
        raise CameraFeatureError(
            f"camera {camera}: feature {name!r} cannot be read: node is "
            f"{_ACCESS_NAMES.get(access, access)}"
        )
    try:
        value = node.value
    except Exception as exc:
        raise CameraFeatureError(f"camera {camera}: reading {name!r} failed: {exc}") from exc
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def write_feature(node_map: Any, camera: str, name: str, value: FeatureValue) -> FeatureValue:
    """Write one node, checked against what it allows first, and read it back.

    Raises ``CameraFeatureError`` naming the node, the value and what the node allows, for a
    missing node, one that is not writable now, a value of the wrong type, out of range, off
    the increment, or not an enum entry.
    """
    node = _node(node_map, camera, name, value)
    access = int(node.node.get_access_mode())
    intf = int(node.node.principal_interface_type)

    def fail(why: str) -> CameraFeatureError:
        return CameraFeatureError(
            f"camera {camera}: feature {name!r} = {value!r}: {why}; {_allowed(node)}"
        )

    if access not in (2, 4):
        raise fail(f"node is {_ACCESS_NAMES.get(access, access)}, not writable"
                   + (" (TLParamsLocked: set it before acquisition starts)" if access == 3
                      else ""))
    if intf == _INTF_COMMAND:
        if value is not True:
            raise fail("a command node takes true")
        try:
            node.execute()
        except Exception as exc:
            raise fail(f"execute failed: {exc}") from exc
        return True
    if intf == _INTF_INTEGER:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()
        ):
            raise fail("needs an integer")
        iv = int(value)
        lo, hi, inc = int(node.min), int(node.max), int(node.inc)
        if not lo <= iv <= hi:
            raise fail("out of range")
        if inc > 1 and (iv - lo) % inc:
            raise fail("not on the increment")
        target: FeatureValue = iv
    elif intf == _INTF_FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("needs a number")
        fv = float(value)
        if not float(node.min) <= fv <= float(node.max):
            raise fail("out of range")
        target = fv
    elif intf == _INTF_ENUMERATION:
        if not isinstance(value, str) or value not in node.symbolics:
            raise fail("not an entry of the enumeration")
        target = value
    elif intf == _INTF_BOOLEAN:
        if not isinstance(value, bool):
            raise fail("needs true or false")
        target = value
    elif intf == _INTF_STRING:
        if not isinstance(value, str):
            raise fail("needs a string")
        target = value
    else:
        raise fail(f"node type {intf} cannot be set from the config")
    try:
        node.value = target
    except Exception as exc:  # genapi OutOfRange / InvalidArgument / Access / Logical ...
        raise fail(f"the device refused it ({type(exc).__name__}: {exc})") from exc
    if access == 2:
        return target
    readback = read_feature(node_map, camera, name)
    if isinstance(target, float) and isinstance(readback, (int, float)):
        if not math.isclose(float(readback), target, rel_tol=1e-3, abs_tol=1e-6):
            raise fail(f"read back {readback!r} (the device changed it)")
    elif readback != target:
        raise fail(f"read back {readback!r} (the device changed it)")
    return readback



def configure_trigger(nm: Any, camera: str, wanted: str, line: str, log: LogFn) -> str:
    """Set the trigger nodes for ``wanted`` (``auto``, ``software``, ``hardware`` on ``line``,
    ``single``) and return the mode chosen (``auto`` probes for a software trigger).

    ``CameraFeatureError`` when the device lacks the nodes a mode needs, naming them and the
    way out.
    """

    def has(n: str) -> bool:
        return bool(nm.has_node(n)) and int(getattr(nm, n).node.get_access_mode()) >= 2

    def entries(n: str) -> list[str]:
        return list(getattr(nm, n).symbolics) if has(n) else []

    if has("TriggerSelector") and "FrameStart" in entries("TriggerSelector"):
        write_feature(nm, camera, "TriggerSelector", "FrameStart")
    software = has("TriggerMode") and has("TriggerSoftware") and (
        "Software" in entries("TriggerSource"))
    if wanted == "auto":
        wanted = "software" if software else "single"
        log("info", "camera_trigger_probed", camera=camera, software_trigger=software,
            chosen=wanted)
    if wanted == "software":
        if not software:
            raise CameraFeatureError(
                f"camera {camera}: trigger 'software' needs the nodes TriggerMode, "
                "TriggerSource (entry Software) and TriggerSoftware; the device lacks them; "
                "use trigger 'auto' or 'single'"
            )
        write_feature(nm, camera, "TriggerMode", "On")
        write_feature(nm, camera, "TriggerSource", "Software")
    elif wanted == "hardware":
        if not (has("TriggerMode") and has("TriggerSource")):
            raise CameraFeatureError(
                f"camera {camera}: trigger 'hardware' needs the nodes TriggerMode and "
                "TriggerSource; the device lacks them; use 'auto' or 'single'"
            )
        if line not in entries("TriggerSource"):
            raise CameraFeatureError(
                f"camera {camera}: feature 'TriggerSource' = {line!r}: not an entry; "
                f"allowed: {', '.join(entries('TriggerSource'))}"
            )
        write_feature(nm, camera, "TriggerMode", "On")
        write_feature(nm, camera, "TriggerSource", line)
    else:
        if has("TriggerMode") and "Off" in entries("TriggerMode"):
            write_feature(nm, camera, "TriggerMode", "Off")
        if has("AcquisitionMode") and "SingleFrame" in entries("AcquisitionMode"):
            write_feature(nm, camera, "AcquisitionMode", "SingleFrame")
    return wanted


def read_exposure(nm: Any) -> tuple[float | None, float | None]:
    """(exposure [µs], gain [dB]) in force, each ``None`` when the device has no readable
    node for it (``ExposureTime``, else ``ExposureTimeAbs``; ``Gain``)."""
    exposure: float | None = None
    gain: float | None = None
    for node in ("ExposureTime", "ExposureTimeAbs"):
        if nm.has_node(node):
            try:
                exposure = float(getattr(nm, node).value)
                break
            except Exception:
                continue
    if nm.has_node("Gain"):
        try:
            gain = float(nm.Gain.value)
        except Exception:
            gain = None
    return exposure, gain
