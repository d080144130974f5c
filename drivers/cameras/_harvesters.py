"""The harvesters session of a camera worker: any GenICam device behind a GenTL producer
(.cti), and the device listing ``station devices`` prints.

Runs inside the worker process only (``_worker``), so the station's process never imports
harvesters. One ``Harvester`` per session: harvesters 1.4.3 cannot load the same .cti twice in
one process, and ``Harvester.update()`` destroys every acquirer (see docs/cameras.md).
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

import numpy as np

from config.errors import CameraError, CameraLost, CameraNotFound, CameraTimeout, PixelFormatError
from drivers.cameras._genapi import LogFn
from drivers.cameras._session import Session, Sink, select_device
from drivers.frame import pixel_format_info

#: GenTL DEVICE_ACCESS_STATUS values (GenTL SFNC), as `station devices` prints them.
ACCESS_STATUS = {
    0: "unknown", 1: "available (read/write)", 2: "available (read-only)", 3: "no access",
    4: "busy (opened by another application)", 5: "open (read/write)", 6: "open (read-only)",
}


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


class HarvestersSession(Session):
    """One GenICam device through harvesters: its own Harvester and image acquirer."""

    def __init__(self, log: LogFn) -> None:
        """``log(level, event, **fields)`` forwards to the parent's structlog."""
        super().__init__(log)
        self._h: Any = None
        self._ia: Any = None

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

    def _node_map(self) -> Any:
        return self._ia.remote_device.node_map

    @property
    def _device_open(self) -> bool:
        return self._ia is not None

    def _start_stream(self) -> None:
        self._ia.start()

    def _stop_stream(self) -> None:
        self._ia.stop()

    def _close_device(self) -> None:
        if self._ia is not None:
            ia, self._ia = self._ia, None
            ia.destroy()

    def _release(self) -> None:
        if self._h is not None:
            try:
                self._h.reset()
            except Exception as exc:
                self._log("warning", "camera_worker_reset_failed", error=str(exc))
            self._h = None

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

    def grab(self, timeout_s: float, sink: Sink) -> dict[str, Any]:
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
        return self._stamp(meta, arrived_ns)

    def _copy_out(self, buffer: Any, raw: Any, complete: bool, sink: Sink) -> dict[str, Any]:
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
