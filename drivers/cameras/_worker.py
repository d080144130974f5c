"""The camera worker process: one per GenICam camera, owning its own Harvester.

Why a process (see docs/cameras.md): harvesters 1.4.3 has no device-lost event, a second
Harvester loading the same .cti in one process fails, ``Harvester.update()`` destroys every
acquirer, a waiting fetch can starve other threads of the GIL, some producers only recover
after a process restart, and memory grows over long runs. A process per camera isolates all
of that: the station's process never imports harvesters, a hung or crashed producer is killed
and restarted, and nothing it leaks outlives it.

Protocol (pickled tuples over a Unix socket pair, one request at a time):

    parent -> worker: ("open", spec) ("trigger",) ("grab", timeout_s) ("get", node)
                      ("set", node, value) ("close",)
    worker -> parent: ("log", level, event, fields)   any number, before a reply
                      ("shm", size) + one fd (SCM_RIGHTS)  a new frame buffer (memfd)
                      ("ok", value) | ("frame", meta) | ("err", error class name, message)

Frames travel in a memfd the worker creates and the parent maps: the pixels are copied once,
inside the producer buffer's ``with`` block, into shared memory; the buffer is requeued at once.

Run as ``python -m drivers.cameras._worker --serve FD`` (by ``_genicam``) or
``python -m drivers.cameras._worker --list CTI [--open]`` (device listing, JSON on stdout).
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import mmap
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.reduction import sendfds
from typing import Any

import numpy as np

from config.errors import (
    CameraError,
    CameraFeatureError,
    CameraLost,
    CameraNotFound,
    CameraTimeout,
    PixelFormatError,
)
from drivers.frame import pixel_format_info

FeatureValue = bool | int | float | str
LogFn = Callable[..., None]

#: GenTL DEVICE_ACCESS_STATUS values (GenTL SFNC), as `station devices` prints them.
ACCESS_STATUS = {
    0: "unknown", 1: "available (read/write)", 2: "available (read-only)", 3: "no access",
    4: "busy (opened by another application)", 5: "open (read/write)", 6: "open (read-only)",
}
_ACCESS_NAMES = {0: "not implemented (NI)", 1: "not available now (NA)", 2: "write-only (WO)",
                 3: "read-only (RO)", 4: "read/write (RW)"}
_INTF_INTEGER, _INTF_BOOLEAN, _INTF_COMMAND, _INTF_FLOAT = 2, 3, 4, 5
_INTF_STRING, _INTF_ENUMERATION = 6, 9


# --------------------------------------------------------------------------------------------
# feature access (pure functions of a genapi node map)
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# device discovery
# --------------------------------------------------------------------------------------------

def _info_dict(info: Any) -> dict[str, str]:
    props: dict[str, Any] = dict(getattr(info, "property_dict", {}) or {})

    def get(key: str) -> str:
        v = props.get(key)
        if v is None:
            try:
                v = getattr(info, key)
            except Exception:
                v = None
        return "" if v is None else str(v)

    try:
        status = int(props.get("access_status", -1))
    except (TypeError, ValueError):
        status = -1
    return {
        "vendor": get("vendor"), "model": get("model"), "serial_number": get("serial_number"),
        "user_defined_name": get("user_defined_name"), "id": get("id_"),
        "tl_type": get("tl_type"), "version": get("version"),
        "access_status": ACCESS_STATUS.get(status, f"unknown ({status})"),
    }


def select_device(
    infos: list[dict[str, str]], camera: str, genicam: dict[str, Any], producers: list[str]
) -> int:
    """Index of the device the selectors name; ``CameraNotFound`` listing what there is."""
    keys = [("serial_number", "serial_number"), ("user_defined_name", "user_defined_name"),
            ("device_id", "id")]
    chosen = [(k, f, genicam.get(k)) for k, f in keys if genicam.get(k) is not None]
    seen = "; ".join(
        f"[{i}] serial {d['serial_number']!r} id {d['id']!r} name {d['user_defined_name']!r} "
        f"({d['vendor']} {d['model']})" for i, d in enumerate(infos)
    ) or "none"
    where = f"{len(infos)} device(s) seen by {', '.join(producers)}: {seen}"
    index = genicam.get("index")
    if chosen:
        matches = [i for i, d in enumerate(infos)
                   if all(d[f] == str(v) for _, f, v in chosen)]
        if index is not None:
            matches = [i for i in matches if i == index]
        if not matches:
            want = ", ".join(f"{k}={v!r}" for k, _, v in chosen)
            raise CameraNotFound(
                f"camera {camera}: no device with {want}; {where}; `station devices` lists them"
            )
        return matches[0]
    if index is not None:
        if index >= len(infos):
            raise CameraNotFound(f"camera {camera}: no device at index {index}; {where}")
        return int(index)
    if len(infos) == 1:
        return 0
    raise CameraNotFound(
        f"camera {camera}: no selector (serial_number, user_defined_name, device_id or index) "
        f"and {where}; pick one"
    )


def list_devices(producers: list[str], try_open: bool) -> list[dict[str, str]]:
    """Every device the producers see, optionally opening each to prove ``create`` works."""
    from harvesters.core import Harvester

    h = Harvester()
    try:
        for p in producers:
            h.add_file(p, check_existence=True, check_validity=True)
        h.update()
        out = [_info_dict(i) for i in h.device_info_list]
        if try_open:
            for i, d in enumerate(out):
                try:
                    ia = h.create(i)
                    ia.destroy()
                    d["open"] = "ok"
                except Exception as exc:
                    d["open"] = f"failed: {type(exc).__name__}: {exc}"
        return out
    finally:
        h.reset()


# --------------------------------------------------------------------------------------------
# the camera session (one device, one Harvester)
# --------------------------------------------------------------------------------------------

class Session:
    """One opened device: features, trigger mode, acquisition, frames into shared memory."""

    def __init__(self, log: LogFn) -> None:
        """``log(level, event, **fields)`` forwards to the parent's structlog."""
        self._log = log
        self._h: Any = None
        self._ia: Any = None
        self.name = "?"
        self.mode = "single"
        self.info: dict[str, str] = {}
        self._acquiring = False
        self._triggered_ns = 0
        self._exposure: float | None = None
        self._gain: float | None = None
        self._grabs = 0
        self._pixel_format = ""
        self._format_warned = False

    # -- open / close ------------------------------------------------------------------

    def open(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Find the device, create the acquirer, apply features, choose the trigger mode."""
        from harvesters.core import Harvester

        self.name = str(spec["name"])
        gc: dict[str, Any] = spec["genicam"]
        producers: list[str] = list(spec["producers"])
        self._h = Harvester()
        for p in producers:
            try:
                self._h.add_file(p, check_existence=True, check_validity=True)
            except Exception as exc:
                raise CameraNotFound(
                    f"camera {self.name}: GenTL producer {p} cannot be loaded: {exc}"
                ) from exc
        self._h.update()
        infos = [_info_dict(i) for i in self._h.device_info_list]
        index = select_device(infos, self.name, gc, producers)
        self.info = infos[index]
        try:
            self._ia = self._h.create(index)
        except Exception as exc:
            if type(exc).__name__ == "ResourceInUseException":
                raise CameraError(
                    f"camera {self.name}: device {self.info['id']} (serial "
                    f"{self.info['serial_number']}) is in use by another application or "
                    "process; close it (vendor viewer?) and retry"
                ) from exc
            raise CameraError(
                f"camera {self.name}: opening device {self.info['id']} failed: "
                f"{type(exc).__name__}: {exc} (Python {sys.version_info[0]}."
                f"{sys.version_info[1]}; some producers fail here on >= 3.11, harvesters#503)"
            ) from exc
        # harvesters installs its own SIGINT handler on the main thread: the parent handles
        # Ctrl-C and closes us, so the worker ignores SIGINT.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        wanted = int(gc.get("buffers", 4))
        minimum = int(getattr(self._ia, "min_num_buffers", 1) or 1)
        if wanted < minimum:  # e.g. TLSimu announces at least 5
            self._log("warning", "camera_buffers_raised", camera=self.name, configured=wanted,
                      producer_minimum=minimum)
        self._ia.num_buffers = max(wanted, minimum)
        return self._configure(self._ia.remote_device.node_map, gc)

    #: Trigger input used when the config names none.
    DEFAULT_TRIGGER_LINE = "Line0"

    def _pixel_format_of(self, nm: Any) -> str:
        """The device's PixelFormat as a PFNC name."""
        return str(read_feature(nm, self.name, "PixelFormat"))

    def _configure(self, nm: Any, gc: dict[str, Any]) -> dict[str, Any]:
        """Apply the features in order, check the pixel format, choose the trigger mode, start.

        Shared by every backend once its device is open; returns what ``open`` reports.
        """
        for node, value in dict(gc.get("features", {})).items():
            readback = write_feature(nm, self.name, node, value)
            self._log("info", "camera_feature_applied", camera=self.name, node=node,
                      value=repr(value), readback=repr(readback))
        fmt = self._pixel_format_of(nm)
        try:
            pixel_format_info(fmt)
        except PixelFormatError as exc:
            raise PixelFormatError(f"camera {self.name}: {exc}") from None
        self._pixel_format = fmt
        self.mode = self._configure_trigger(
            nm, str(gc.get("trigger", "auto")),
            str(gc.get("trigger_line", self.DEFAULT_TRIGGER_LINE)),
        )
        self._refresh_exposure(nm)
        if self.mode in ("software", "hardware"):
            self._start()
        self._log("info", "camera_trigger_mode", camera=self.name, mode=self.mode)
        return {**self.info, "mode": self.mode, "pixel_format": fmt,
                "exposure_us": self._exposure, "gain_db": self._gain}

    def _configure_trigger(self, nm: Any, wanted: str, line: str) -> str:
        def has(n: str) -> bool:
            return bool(nm.has_node(n)) and int(getattr(nm, n).node.get_access_mode()) >= 2

        def entries(n: str) -> list[str]:
            return list(getattr(nm, n).symbolics) if has(n) else []

        if has("TriggerSelector") and "FrameStart" in entries("TriggerSelector"):
            write_feature(nm, self.name, "TriggerSelector", "FrameStart")
        software = has("TriggerMode") and has("TriggerSoftware") and (
            "Software" in entries("TriggerSource"))
        if wanted == "auto":
            wanted = "software" if software else "single"
            self._log("info", "camera_trigger_probed", camera=self.name,
                      software_trigger=software, chosen=wanted)
        if wanted == "software":
            if not software:
                raise CameraFeatureError(
                    f"camera {self.name}: trigger 'software' needs the nodes TriggerMode, "
                    "TriggerSource (entry Software) and TriggerSoftware; the device lacks "
                    "them; use trigger 'auto' or 'single'"
                )
            write_feature(nm, self.name, "TriggerMode", "On")
            write_feature(nm, self.name, "TriggerSource", "Software")
        elif wanted == "hardware":
            if not (has("TriggerMode") and has("TriggerSource")):
                raise CameraFeatureError(
                    f"camera {self.name}: trigger 'hardware' needs the nodes TriggerMode and "
                    "TriggerSource; the device lacks them; use 'auto' or 'single'"
                )
            if line not in entries("TriggerSource"):
                raise CameraFeatureError(
                    f"camera {self.name}: feature 'TriggerSource' = {line!r}: not an entry; "
                    f"allowed: {', '.join(entries('TriggerSource'))}"
                )
            write_feature(nm, self.name, "TriggerMode", "On")
            write_feature(nm, self.name, "TriggerSource", line)
        else:
            if has("TriggerMode") and "Off" in entries("TriggerMode"):
                write_feature(nm, self.name, "TriggerMode", "Off")
            if has("AcquisitionMode") and "SingleFrame" in entries("AcquisitionMode"):
                write_feature(nm, self.name, "AcquisitionMode", "SingleFrame")
        return wanted

    def _refresh_exposure(self, nm: Any) -> None:
        self._exposure = self._gain = None
        for node in ("ExposureTime", "ExposureTimeAbs"):
            if nm.has_node(node):
                try:
                    self._exposure = float(getattr(nm, node).value)
                    break
                except Exception:
                    continue
        if nm.has_node("Gain"):
            try:
                self._gain = float(nm.Gain.value)
            except Exception:
                self._gain = None

    def close(self) -> None:
        """Stop, destroy, reset: best effort, never raises."""
        for step in (self._stop, self._destroy):
            try:
                step()
            except Exception as exc:
                self._log("warning", "camera_worker_close_step_failed", camera=self.name,
                          error=str(exc))
        if self._h is not None:
            try:
                self._h.reset()
            except Exception as exc:
                self._log("warning", "camera_worker_reset_failed", error=str(exc))
            self._h = None

    def _destroy(self) -> None:
        if self._ia is not None:
            ia, self._ia = self._ia, None
            ia.destroy()

    def _start(self) -> None:
        if not self._acquiring:
            self._ia.start()
            self._acquiring = True

    def _stop(self) -> None:
        if self._acquiring and self._ia is not None:
            self._acquiring = False
            self._ia.stop()

    # -- acquisition ---------------------------------------------------------------------

    def trigger(self) -> None:
        """Software: flush stale buffers, execute TriggerSoftware. Single: start acquisition.
        Hardware: nothing (armed; the line triggers)."""
        self._triggered_ns = time.time_ns()
        try:
            if self.mode == "software":
                self._flush()
                self._ia.remote_device.node_map.TriggerSoftware.execute()
            elif self.mode == "single":
                self._stop()
                self._start()
        except CameraError:
            raise
        except Exception as exc:
            raise CameraLost(
                f"camera {self.name}: trigger failed ({type(exc).__name__}: {exc})"
            ) from exc

    def _monitor(self) -> Any:
        monitors = list(getattr(self._ia, "_new_buffer_event_monitor_dict", {}).values())
        if not monitors:
            raise CameraLost(f"camera {self.name}: no data stream (acquisition not started)")
        return monitors[0]

    def _flush(self) -> None:
        """Requeue buffers filled before this trigger (bounded)."""
        from genicam.gentl import TimeoutException

        monitor = self._monitor()
        for _ in range(int(self._ia.num_buffers) + 2):
            try:
                monitor.update_event_data(0)
            except TimeoutException:
                return
            monitor.buffer.parent.queue_buffer(monitor.buffer)

    def grab(
        self, timeout_s: float, sink: Callable[[int], memoryview]
    ) -> dict[str, Any]:
        """Wait at most ``timeout_s`` for the next buffer; copy its pixels into ``sink(n)``
        inside the buffer's ``with`` block (the buffer is requeued on leaving it)."""
        from genicam.gentl import GenericException, TimeoutException
        from harvesters.core import Buffer

        if self.mode == "single" and not self._acquiring:
            raise CameraError(f"camera {self.name}: grab() without trigger()")
        monitor = self._monitor()
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CameraTimeout(
                        f"camera {self.name}: no frame within {timeout_s:.3f} s "
                        f"(trigger mode {self.mode})"
                    )
                try:
                    monitor.update_event_data(max(1, int(min(remaining, 0.2) * 1000)))
                except TimeoutException:
                    continue
                break
            raw = monitor.buffer
            arrived_ns = time.time_ns()
            try:
                complete = bool(raw.is_complete())
            except GenericException:
                complete = False
            try:
                buffer = Buffer(module=raw, node_map=self._ia.remote_device.node_map,
                                acquire=self._ia)
            except GenericException as exc:
                raw.parent.queue_buffer(raw)
                raise CameraLost(f"camera {self.name}: unreadable buffer: {exc}") from exc
            with buffer:
                meta = self._copy_out(buffer, raw, complete, sink)
        except CameraError:
            raise
        except GenericException as exc:
            raise CameraLost(
                f"camera {self.name}: GenTL error while grabbing ({type(exc).__name__}: {exc})"
            ) from exc
        finally:
            if self.mode == "single":
                try:
                    self._stop()
                except Exception as exc:
                    self._log("warning", "camera_stop_failed", camera=self.name, error=str(exc))
        meta["host_timestamp_ns"] = (
            arrived_ns if self.mode == "hardware" else self._triggered_ns)
        meta["extra"]["arrival_ns"] = str(arrived_ns)
        meta["extra"]["host_clock"] = "arrival" if self.mode == "hardware" else "trigger"
        return meta

    def _copy_out(
        self, buffer: Any, raw: Any, complete: bool, sink: Callable[[int], memoryview]
    ) -> dict[str, Any]:
        components = buffer.payload.components if buffer.payload is not None else []
        if not components:
            raise CameraError(f"camera {self.name}: buffer without an image component")
        c = components[0]
        fmt = str(c.data_format)
        try:
            channels, bits = pixel_format_info(fmt)
        except PixelFormatError as exc:
            raise PixelFormatError(f"camera {self.name}: {exc}") from None
        if fmt != self._pixel_format and not self._format_warned:
            self._format_warned = True  # e.g. TLSimu accepts PixelFormat but streams Mono8
            self._log("warning", "camera_format_differs", camera=self.name,
                      node_pixel_format=self._pixel_format, buffer_pixel_format=fmt)
        dtype = np.dtype(np.uint8 if bits == 8 else np.uint16)
        h, w = int(c.height), int(c.width)
        src = np.asarray(c.data)
        if src.dtype != dtype:
            src = src.view(np.uint8).view(dtype) if src.nbytes % dtype.itemsize == 0 else src
        need = h * w * channels
        if src.size < need:
            complete = False
        n = min(int(src.size), need)
        dst = np.frombuffer(sink(need * dtype.itemsize), dtype=dtype, count=need)
        dst[:n] = src.reshape(-1)[:n]
        if n < need:
            dst[n:] = 0
        try:
            device_ts: int | None = int(buffer.timestamp_ns)
        except Exception:  # viky: NotAvailableException; other producers: ticks only
            device_ts = None
        try:
            device_frame_id = int(raw.frame_id)
        except Exception:
            device_frame_id = -1
        self._grabs += 1
        # Single-frame acquisition restarts the stream, so the device's frame id restarts too:
        # there the worker's own count is the frame id; with triggers the device's counts.
        frame_id = self._grabs if self.mode == "single" or device_frame_id < 0 else (
            device_frame_id)
        shape = [h, w] if channels == 1 else [h, w, channels]
        return {"frame_id": frame_id, "pixel_format": fmt, "shape": shape,
                "dtype": dtype.name, "nbytes": need * dtype.itemsize, "complete": complete,
                "device_timestamp_ns": device_ts, "exposure_us": self._exposure,
                "gain_db": self._gain, "extra": {"backend": "genicam", "mode": self.mode,
                                                 "device_frame_id": str(device_frame_id)}}

    # -- features at run time ------------------------------------------------------------

    def get(self, node: str) -> FeatureValue:
        """Read a node of the remote device."""
        return read_feature(self._ia.remote_device.node_map, self.name, node)

    def set(self, node: str, value: FeatureValue) -> FeatureValue:
        """Write a node; TLParams-locked ones get acquisition stopped around the write."""
        nm = self._ia.remote_device.node_map
        try:
            result = write_feature(nm, self.name, node, value)
        except CameraFeatureError:
            if not self._acquiring:
                raise
            self._stop()
            try:
                result = write_feature(nm, self.name, node, value)
            finally:
                if self.mode in ("software", "hardware"):
                    self._start()
        self._refresh_exposure(nm)
        if node == "PixelFormat":
            self._pixel_format, self._format_warned = str(result), False
        return result


# --------------------------------------------------------------------------------------------
# the serve loop
# --------------------------------------------------------------------------------------------

class _SharedFrame:
    """A memfd the worker writes frames into; a bigger one is made (and its fd sent) on need."""

    def __init__(self, conn: Connection, sock: socket.socket) -> None:
        self._conn, self._sock = conn, sock
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._size = 0

    def view(self, nbytes: int) -> memoryview:
        if nbytes > self._size or self._map is None:
            fd = os.memfd_create("station-camera-frame", os.MFD_CLOEXEC)
            size = max(nbytes, 1)
            os.ftruncate(fd, size)
            new_map = mmap.mmap(fd, size)
            self._conn.send(("shm", size))
            sendfds(self._sock, [fd])
            self.close()
            self._fd, self._map, self._size = fd, new_map, size
        return memoryview(self._map)[:nbytes]

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def serve(fd: int) -> int:
    """Answer the parent's requests on the socket ``fd`` until ``close`` or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    sock = socket.socket(fileno=os.dup(fd))
    shared = _SharedFrame(conn, sock)

    def log(level: str, event: str, **fields: object) -> None:
        conn.send(("log", level, event, {k: str(v) for k, v in fields.items()}))

    session = Session(log)

    def do_open(spec: dict[str, Any]) -> dict[str, Any]:
        nonlocal session
        if spec.get("backend") == "pylon":
            try:
                from drivers.cameras._pylon import PylonSession
            except ImportError as exc:
                raise CameraError(
                    f"camera {spec.get('name')}: backend 'pylon' needs pypylon "
                    f"(pip install 'inspection-station[pylon]'): {exc}"
                ) from exc
            session = PylonSession(log)
        return session.open(spec)

    handlers: dict[str, Callable[..., Any]] = {
        "open": do_open, "trigger": lambda: session.trigger(),
        "get": lambda node: session.get(node),
        "set": lambda node, value: session.set(node, value),
        "grab": lambda timeout_s: ("frame", session.grab(float(timeout_s), shared.view)),
    }
    try:
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return 0  # the parent went away
            op, args = request[0], request[1:]
            if op == "close":
                session.close()
                conn.send(("ok", None))
                return 0
            try:
                result = handlers[op](*args)
            except CameraError as exc:
                conn.send(("err", type(exc).__name__, str(exc)))
                continue
            except Exception as exc:  # anything untranslated: report, the parent decides
                conn.send(("err", "CameraError",
                           f"camera {session.name}: {op} failed: {type(exc).__name__}: {exc}"))
                continue
            if isinstance(result, tuple) and result and result[0] == "frame":
                conn.send(result)
            else:
                conn.send(("ok", result))
    finally:
        session.close()
        shared.close()
        sock.close()


def main(argv: list[str] | None = None) -> int:
    """``--serve FD`` or ``--list CTI... [--open]``."""
    parser = argparse.ArgumentParser(prog="python -m drivers.cameras._worker")
    parser.add_argument("--serve", type=int, metavar="FD")
    parser.add_argument("--list", nargs="+", metavar="CTI")
    parser.add_argument("--open", action="store_true")
    args = parser.parse_args(argv)
    if args.serve is not None:
        return serve(args.serve)
    if args.list:
        try:
            devices = list_devices(args.list, args.open)
        except Exception as exc:
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
            return 1
        print(json.dumps({"devices": devices}))
        return 0
    parser.error("give --serve FD or --list CTI...")
    return 2


if __name__ == "__main__":
    sys.exit(main())
