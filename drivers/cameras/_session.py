"""What every camera session in the worker shares: device selection, configuration, the
acquisition start/stop and close steps, run-time feature access, host time stamps.

A session is one opened device inside the worker process (``_worker.serve`` answers the
station's requests with it). ``HarvestersSession`` (``_harvesters``, any GenTL producer) and
``PylonSession`` (``_pylon``, pypylon) implement the vendor part: opening, triggering,
grabbing into shared memory, and the stream and device steps this base calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from config.errors import CameraFeatureError, CameraNotFound, PixelFormatError
from drivers.cameras._genapi import (
    FeatureValue,
    LogFn,
    configure_trigger,
    read_exposure,
    read_feature,
    write_feature,
)
from drivers.frame import pixel_format_info

#: ``sink(nbytes)``: a writable view of shared memory the frame's pixels are copied into.
Sink = Callable[[int], memoryview]


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


class Session(ABC):
    """One opened device: features, trigger mode, acquisition, frames into shared memory."""

    #: Trigger input used when the config names none.
    DEFAULT_TRIGGER_LINE = "Line0"

    def __init__(self, log: LogFn) -> None:
        """``log(level, event, **fields)`` forwards to the parent's structlog."""
        self._log = log
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

    # -- what a backend provides ---------------------------------------------------------

    @abstractmethod
    def open(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Find and open the device ``spec`` names, then :meth:`_configure` it."""

    @abstractmethod
    def trigger(self) -> None:
        """Make the device take the next frame (as the trigger mode says)."""

    @abstractmethod
    def grab(self, timeout_s: float, sink: Sink) -> dict[str, Any]:
        """Wait at most ``timeout_s`` for the next frame, copy it into ``sink(n)``, return its
        metadata (see :meth:`_stamp`)."""

    @abstractmethod
    def _node_map(self) -> Any:
        """The open device's node map (genapi shape, see ``_genapi``)."""

    @property
    @abstractmethod
    def _device_open(self) -> bool:
        """True while a device is open (stopping a stream needs one)."""

    @abstractmethod
    def _start_stream(self) -> None:
        """Start the device's acquisition (once per :meth:`_start`)."""

    @abstractmethod
    def _stop_stream(self) -> None:
        """Stop the device's acquisition (once per :meth:`_stop`)."""

    @abstractmethod
    def _close_device(self) -> None:
        """Release the device (after the stream is stopped)."""

    @abstractmethod
    def _release(self) -> None:
        """Release what outlives the device (harvesters: the Harvester), never raising."""

    def _pixel_format_of(self, nm: Any) -> str:
        """The device's PixelFormat as a PFNC name."""
        return str(read_feature(nm, self.name, "PixelFormat"))

    def _pfnc(self, name: str) -> str:
        """A pixel format name as the device's node gives it, in PFNC spelling."""
        return name

    # -- shared steps --------------------------------------------------------------------

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
        self.mode = configure_trigger(
            nm, self.name, str(gc.get("trigger", "auto")),
            str(gc.get("trigger_line", self.DEFAULT_TRIGGER_LINE)), self._log,
        )
        self._refresh_exposure(nm)
        if self.mode in ("software", "hardware"):
            self._start()
        self._log("info", "camera_trigger_mode", camera=self.name, mode=self.mode)
        return {**self.info, "mode": self.mode, "pixel_format": fmt,
                "exposure_us": self._exposure, "gain_db": self._gain}

    def _refresh_exposure(self, nm: Any) -> None:
        self._exposure, self._gain = read_exposure(nm)

    def _start(self) -> None:
        if not self._acquiring:
            self._start_stream()
            self._acquiring = True

    def _stop(self) -> None:
        if self._acquiring and self._device_open:
            self._acquiring = False
            self._stop_stream()

    def close(self) -> None:
        """Stop, close the device, release the rest: best effort, never raises."""
        for step in (self._stop, self._close_device):
            try:
                step()
            except Exception as exc:
                self._log("warning", "camera_worker_close_step_failed", camera=self.name,
                          error=str(exc))
        self._release()

    def _stamp(self, meta: dict[str, Any], arrived_ns: int) -> dict[str, Any]:
        """Add the host clock to a frame's metadata: arrival with a hardware trigger (the
        line fired at an unknown moment), the trigger call otherwise."""
        meta["host_timestamp_ns"] = (
            arrived_ns if self.mode == "hardware" else self._triggered_ns)
        meta["extra"]["arrival_ns"] = str(arrived_ns)
        meta["extra"]["host_clock"] = "arrival" if self.mode == "hardware" else "trigger"
        return meta

    # -- features at run time ------------------------------------------------------------

    def get(self, node: str) -> FeatureValue:
        """Read a node of the remote device."""
        return read_feature(self._node_map(), self.name, node)

    def set(self, node: str, value: FeatureValue) -> FeatureValue:
        """Write a node; TLParams-locked ones get acquisition stopped around the write."""
        nm = self._node_map()
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
            self._pixel_format, self._format_warned = self._pfnc(str(result)), False
        return result
