"""The Basler pylon session of a camera worker (pypylon, optional extra ``pylon``).

Runs inside ``drivers.cameras._worker`` like the harvesters session and implements the same
``Session`` base (``_session``), so the station side (``GenICamCamera``, the rig, recovery)
is the same for both. An adapter gives pypylon's
parameters the shape of harvesters' genapi nodes, so feature application, its checks and its
error messages are shared code. With ``PYLON_CAMEMU=N`` pylon offers N emulated cameras
(software and hardware trigger, Bayer formats, failed-buffer injection): the tests use them.

The config's ``genicam`` section selects the device (serial number, user-defined name, device
id = pylon's full name, or index) and lists the features; ``genicam.cti`` is not used.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from config.errors import CameraError, CameraLost, CameraNotFound, CameraTimeout
from drivers.cameras._genapi import LogFn
from drivers.cameras._session import Session, Sink, select_device
from drivers.frame import pixel_format_info

#: pylon's names of formats whose PFNC name differs.
_PYLON_TO_PFNC = {"RGB8Packed": "RGB8", "BGR8Packed": "BGR8", "BGRA8Packed": "BGRa8"}


class _Param:
    """A pypylon parameter dressed as a harvesters genapi node (the subset we use)."""

    def __init__(self, param: Any) -> None:
        self._p = param
        self.node = self

    # INode side
    def get_access_mode(self) -> int:
        return int(self._p.GetAccessMode())

    @property
    def principal_interface_type(self) -> int:
        return int(self._p.GetNode().GetPrincipalInterfaceType())

    @property
    def name(self) -> str:
        return str(self._p.GetNode().GetName())

    def is_feature(self) -> bool:
        return bool(self._p.GetNode().IsFeature())

    # value side
    @property
    def min(self) -> Any:
        return self._p.GetMin()

    @property
    def max(self) -> Any:
        return self._p.GetMax()

    @property
    def inc(self) -> Any:
        return self._p.GetInc()

    def has_inc(self) -> bool:
        return bool(self._p.HasInc())

    @property
    def unit(self) -> str:
        try:
            return str(self._p.GetUnit())
        except Exception:
            return ""

    @property
    def symbolics(self) -> tuple[str, ...]:
        return tuple(self._p.Symbolics)

    @property
    def value(self) -> Any:
        return self._p.GetValue()

    @value.setter
    def value(self, v: Any) -> None:
        self._p.SetValue(v)

    def execute(self) -> None:
        self._p.Execute()


class _NodeMap:
    """pylon's node map with the harvesters ``has_node`` / attribute / ``nodes`` interface."""

    def __init__(self, node_map: Any) -> None:
        self._nm = node_map

    def has_node(self, name: str) -> bool:
        try:
            return bool(self._nm.GetNode(name).IsValid())
        except Exception:
            return False

    def __getattr__(self, name: str) -> _Param:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Param(self._nm.GetNode(name))

    @property
    def nodes(self) -> Iterator[_Param]:
        for p in self._nm.GetNodes():
            yield _Param(p)


def _device_info(d: Any) -> dict[str, str]:
    return {
        "vendor": str(d.GetVendorName()), "model": str(d.GetModelName()),
        "serial_number": str(d.GetSerialNumber()),
        "user_defined_name": str(d.GetUserDefinedName()), "id": str(d.GetFullName()),
        "tl_type": str(d.GetDeviceClass()), "version": str(d.GetDeviceVersion()),
        "access_status": "unknown",
    }


def send_software_trigger(cam: Any, name: str, ready_s: float, on_timeout: Any) -> int:
    """Wait up to ``ready_s`` for ``cam`` (a pylon InstantCamera) to be ready for a frame
    trigger, then execute TriggerSoftware; the trigger's wall-clock time [ns].

    A trigger executed before the grab engine or the sensor is ready is dropped by the camera
    and the grab then times out with no reason given (seen on a loaded CI machine with the
    pylon emulation). Never ready: ``CameraTimeout`` naming the camera, and no trigger sent.
    ``on_timeout`` is pylon's ``TimeoutHandling_Return`` (passed in, so that this logic runs
    without loading pylon's native libraries).
    """
    if not cam.WaitForFrameTriggerReady(max(1, int(ready_s * 1000)), on_timeout):
        raise CameraTimeout(
            f"camera {name}: not ready for a software trigger within {ready_s:.1f} s (pylon "
            "WaitForFrameTriggerReady); the trigger was not sent; check the exposure time and "
            "the frame rate limit (AcquisitionFrameRate)"
        )
    triggered_ns = time.time_ns()
    cam.TriggerSoftware.Execute()
    return triggered_ns


class PylonSession(Session):
    """One pylon camera (InstantCamera) in the worker."""

    def __init__(self, log: LogFn) -> None:
        """``log(level, event, **fields)`` forwards to the parent's structlog."""
        super().__init__(log)
        self._cam: Any = None
        self._nm: _NodeMap | None = None
        self._trigger_ready_s = 2.0

    def open(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Enumerate, select, open, apply features, choose the trigger mode, start."""
        from pypylon import pylon

        self.name = str(spec["name"])
        # How long a software trigger waits for the camera to be ready for it (pylon's
        # WaitForFrameTriggerReady), bounded by the camera's timeout_s so that the parent's
        # reply deadline (timeout_s + reply_margin_s) holds. A trigger executed before the
        # grab engine or the sensor is ready is dropped by the camera, and the grab then times
        # out with no reason given (seen on a loaded CI machine with the pylon emulation).
        self._trigger_ready_s = float(spec.get("timeout_s", self._trigger_ready_s))
        gc: dict[str, Any] = spec["genicam"]
        tl = pylon.TlFactory.GetInstance()
        devices = list(tl.EnumerateDevices())
        infos = [_device_info(d) for d in devices]
        index = select_device(infos, self.name, gc, ["pylon"])
        self.info = infos[index]
        try:
            self._cam = pylon.InstantCamera(tl.CreateDevice(devices[index]))
            self._cam.Open()
        except Exception as exc:
            raise CameraNotFound(
                f"camera {self.name}: opening pylon device {self.info['id']} failed: {exc}"
            ) from exc
        self._cam.MaxNumBuffer.Value = int(gc.get("buffers", 4))
        self._nm = _NodeMap(self._cam.GetNodeMap())
        return self._configure(self._nm, gc)

    #: Basler cameras take hardware triggers on Line1.
    DEFAULT_TRIGGER_LINE = "Line1"

    def _pixel_format_of(self, nm: Any) -> str:
        """pylon's PixelFormat name, translated to PFNC where they differ."""
        return self._pfnc(str(nm.PixelFormat.value))

    def _pfnc(self, name: str) -> str:
        return _PYLON_TO_PFNC.get(name, name)

    def _node_map(self) -> Any:
        assert self._nm is not None
        return self._nm

    @property
    def _device_open(self) -> bool:
        return self._cam is not None

    def _start_stream(self) -> None:
        from pypylon import pylon

        if self.mode == "single":
            self._cam.StartGrabbingMax(1, pylon.GrabStrategy_OneByOne)
        else:
            self._cam.StartGrabbing(pylon.GrabStrategy_OneByOne)

    def _stop_stream(self) -> None:
        self._cam.StopGrabbing()

    def _close_device(self) -> None:
        if self._cam is not None:
            cam, self._cam = self._cam, None
            cam.Close()

    def _release(self) -> None:
        """Nothing outlives the camera (pylon's transport layer factory is process-wide)."""

    def trigger(self) -> None:
        """Software: wait until the camera is ready for a frame trigger, then execute
        TriggerSoftware. Single: grab one. Hardware: nothing."""
        from pypylon import pylon

        try:
            if self._cam is None or self._cam.IsCameraDeviceRemoved():
                raise CameraLost(f"camera {self.name}: device removed")
            if self.mode == "software":
                self._triggered_ns = send_software_trigger(
                    self._cam, self.name, self._trigger_ready_s, pylon.TimeoutHandling_Return)
                return
            self._triggered_ns = time.time_ns()
            if self.mode == "single":
                self._stop()
                self._start()
        except CameraError:
            raise
        except Exception as exc:
            raise CameraLost(f"camera {self.name}: trigger failed: {exc}") from exc

    def grab(self, timeout_s: float, sink: Sink) -> dict[str, Any]:
        """Retrieve one result within ``timeout_s``; copy it into ``sink`` and release it."""
        from pypylon import pylon

        if self._cam is None:
            raise CameraLost(f"camera {self.name}: not open")
        try:
            res = self._cam.RetrieveResult(max(1, int(timeout_s * 1000)),
                                           pylon.TimeoutHandling_Return)
        except Exception as exc:
            raise CameraLost(f"camera {self.name}: grab failed: {exc}") from exc
        if res is None or not res.IsValid():
            if self._cam.IsCameraDeviceRemoved():
                raise CameraLost(f"camera {self.name}: device removed")
            raise CameraTimeout(
                f"camera {self.name}: no frame within {timeout_s:.3f} s (trigger mode "
                f"{self.mode})"
            )
        arrived_ns = time.time_ns()
        try:
            meta = self._copy_result(res, sink)
        finally:
            res.Release()
            if self.mode == "single":
                self._stop()
        return self._stamp(meta, arrived_ns)

    def _copy_result(self, res: Any, sink: Sink) -> dict[str, Any]:
        assert self._nm is not None
        fmt = self._pixel_format
        channels, bits = pixel_format_info(fmt)
        dtype = np.dtype(np.uint8 if bits == 8 else np.uint16)
        complete = bool(res.GrabSucceeded())
        extra = {"backend": "pylon", "mode": self.mode}
        if complete:
            h, w = int(res.Height), int(res.Width)
            need = h * w * channels
            dst = np.frombuffer(sink(need * dtype.itemsize), dtype=dtype, count=need)
            with res.GetArrayZeroCopy() as arr:
                dst[:] = np.asarray(arr).reshape(-1).view(dtype)[:need]
        else:  # a failed buffer: no pixels to trust; the frame says so
            h, w = int(self._nm.Height.value), int(self._nm.Width.value)
            need = h * w * channels
            np.frombuffer(sink(need * dtype.itemsize), dtype=dtype, count=need)[:] = 0
            extra["error"] = f"{res.ErrorCode}: {res.ErrorDescription}"
            self._log("warning", "camera_failed_buffer", camera=self.name,
                      error=extra["error"])
        stamp = int(res.TimeStamp) if complete else 0
        self._grabs += 1
        try:
            device_frame_id = int(res.BlockID)
        except Exception:
            device_frame_id = -1
        extra["device_frame_id"] = str(device_frame_id)
        return {"frame_id": self._grabs, "pixel_format": fmt,
                "shape": [h, w] if channels == 1 else [h, w, channels],
                "dtype": dtype.name, "nbytes": need * dtype.itemsize, "complete": complete,
                # pylon's emulation stamps 0: treat 0 as "no device clock".
                "device_timestamp_ns": stamp or None, "exposure_us": self._exposure,
                "gain_db": self._gain, "extra": extra}
