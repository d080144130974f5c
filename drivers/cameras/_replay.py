"""The replay camera: image files (or a function) served as frames, with emulated features.

It runs the whole station without cameras: files are decoded once, optionally scaled to a
sensor size (e.g. 5472 x 3648) and re-mosaiced into a Bayer format, so the 20 MP BayerRG8 path
of the reference booth runs on a laptop. Frames ready to serve (per file and exposure factor)
are kept in an LRU cache as read-only arrays that every frame served from them shares, so a
cached 20 MP frame costs microseconds and does not hide the pipeline's own cost. It emulates
the GenICam features ``ExposureTime`` (µs) and ``Gain`` (dB): pixel values scale linearly
with exposure against a reference of 10000 µs and with gain as 10^(dB/20), saturating at the
format's maximum, which is what `station capture --calibrate` needs to be tested with a known truth.

A scene can also be a function ``fn(frame_index, features) -> ndarray`` (see
:meth:`ReplayCamera.from_function`). For tests of the rig it offers fault injection
(:meth:`ReplayCamera.inject_fault`): timeouts, incomplete frames, a lost device.
"""

from __future__ import annotations

import glob
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
import structlog

from config.cameras import CameraConfig
from config.errors import (
    CameraError,
    CameraFeatureError,
    CameraLost,
    CameraNotFound,
    CameraTimeout,
)
from drivers import pixels
from drivers.cameras.base import CameraHealth
from drivers.frame import Frame, pixel_format_info

log = structlog.get_logger(__name__)

FeatureValue = bool | int | float | str
#: A synthetic scene: (frame index, features in force) -> image at the reference exposure.
SceneFunction = Callable[[int, Mapping[str, FeatureValue]], npt.NDArray[np.generic]]
FaultKind = Literal["timeout", "incomplete", "lost"]

#: The exposure at which served pixel values equal the source's [µs].
REFERENCE_EXPOSURE_US = 10000.0
#: Ranges of the emulated writable features: (min, max, unit).
_WRITABLE: dict[str, tuple[float, float, str]] = {
    "ExposureTime": (1.0, 10_000_000.0, "µs"),
    "Gain": (-20.0, 48.0, "dB"),
}
_READ_ONLY = ("PixelFormat", "Width", "Height", "DeviceModelName", "DeviceVendorName")


def match_images(patterns: list[str], base_dir: Path) -> list[Path]:
    """The files ``patterns`` (globs or folders; relative ones against ``base_dir``) name, in
    order, each once. Empty when nothing matches."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        p = Path(pattern).expanduser()
        full = p if p.is_absolute() else base_dir / p
        matches = sorted(glob.glob(str(full), recursive=True))
        if full.is_dir():
            matches = sorted(str(f) for f in full.iterdir() if f.is_file())
        for m in matches:
            if Path(m).is_file():
                found[Path(m)] = None
    return list(found)


class ReplayCamera:
    """A camera that serves image files (or a scene function) as frames, looping."""

    backend = "replay"

    def __init__(
        self,
        name: str,
        *,
        patterns: list[str] | None = None,
        base_dir: Path | None = None,
        source: SceneFunction | None = None,
        pixel_format: str = "Mono8",
        width: int | None = None,
        height: int | None = None,
        loop: bool = True,
        exposure_us: float = REFERENCE_EXPOSURE_US,
        gain_db: float = 0.0,
        readout_s: float = 0.0,
        cache_bytes: int = 256 << 20,
        timeout_s: float = 2.0,
    ) -> None:
        """Prefer :meth:`from_config` or :meth:`from_function`; exactly one of ``patterns``
        and ``source`` is given."""
        if (patterns is None) == (source is None):
            raise ValueError("ReplayCamera needs exactly one of patterns= and source=")
        pixel_format_info(pixel_format)  # PixelFormatError for unknown / packed formats
        self.name = name
        #: Default grab timeout the rig uses for this camera [s].
        self.timeout_s = timeout_s
        self._patterns = list(patterns or [])
        self._base_dir = base_dir or Path.cwd()
        self._source = source
        self._pixel_format = pixel_format
        self._width = width
        self._height = height
        self._loop = loop
        self._features: dict[str, float] = {"ExposureTime": float(exposure_us),
                                            "Gain": float(gain_db)}
        for node, value in self._features.items():
            self._check_range(node, value)
        self._readout_s = readout_s
        self._cache_bytes = cache_bytes
        self._cache: OrderedDict[tuple[int, float], pixels.Pixels] = OrderedDict()
        self._cached = 0
        self._files: list[Path] = []
        self._lock = threading.RLock()
        self._open = False
        self._next_index = 0
        self._pending: tuple[int, int] | None = None  # (frame index, host timestamp)
        self._faults: list[FaultKind] = []
        self._lost_opens = 0
        self._frames = 0
        self._errors = 0
        self._opens = 0
        self._last_shape: tuple[int, ...] | None = None
        self._last_error = ""

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_config(cls, cfg: CameraConfig, base_dir: Path) -> ReplayCamera:
        """A replay camera from its config; globs are resolved against ``base_dir`` at open."""
        r = cfg.replay
        return cls(
            cfg.name, patterns=list(r.images), base_dir=base_dir, pixel_format=r.pixel_format,
            width=r.width, height=r.height, loop=r.loop, exposure_us=r.exposure_us,
            gain_db=r.gain_db, readout_s=r.readout_ms / 1000.0, cache_bytes=r.cache_mb << 20,
            timeout_s=cfg.timeout_s,
        )

    @classmethod
    def from_function(
        cls,
        name: str,
        fn: SceneFunction,
        pixel_format: str = "Mono8",
        *,
        exposure_us: float = REFERENCE_EXPOSURE_US,
        gain_db: float = 0.0,
        readout_s: float = 0.0,
    ) -> ReplayCamera:
        """A camera whose frame ``i`` is ``fn(i, features)``: a synthetic scene with known truth.

        ``fn`` returns the scene *at the reference exposure* (10000 µs, 0 dB); the camera then
        applies ``ExposureTime`` and ``Gain`` like the file source does. An array already in
        the format's layout (dtype and channels, e.g. ``uint8 (h, w)`` for Mono8 or BayerRG8)
        is taken as raw sample values; anything else (float in [0, 1], RGB, another depth) is
        converted, Bayer formats re-mosaiced from RGB. ``features`` holds ``ExposureTime``,
        ``Gain`` and ``PixelFormat``.
        """
        return cls(name, source=fn, pixel_format=pixel_format, exposure_us=exposure_us,
                   gain_db=gain_db, readout_s=readout_s, cache_bytes=0)

    # -- Camera protocol --------------------------------------------------------------------

    def open(self) -> None:
        """Resolve the image globs (``CameraNotFound`` if none match) and get ready."""
        with self._lock:
            if self._lost_opens > 0:
                self._lost_opens -= 1
                raise CameraLost(
                    f"replay camera {self.name}: device unplugged (injected fault; "
                    f"{self._lost_opens} more open attempt(s) will fail)"
                )
            if self._source is None:
                self._files = self._resolve()
            self._open = True
            self._pending = None
            self._opens += 1
            log.info("camera_opened", camera=self.name, backend="replay",
                     pixel_format=self._pixel_format,
                     images=len(self._files) if self._source is None else "function")

    def _resolve(self) -> list[Path]:
        found = match_images(self._patterns, self._base_dir)
        if not found:
            raise CameraNotFound(
                f"replay camera {self.name}: no image file matches "
                f"{', '.join(repr(p) for p in self._patterns)} (relative to {self._base_dir}); "
                "fix cameras[].replay.images"
            )
        return found

    def trigger(self) -> None:
        """Take the next image (host timestamp now)."""
        with self._lock:
            self._require_open()
            if self._source is None and not self._loop and self._next_index >= len(self._files):
                raise CameraError(
                    f"replay camera {self.name}: all {len(self._files)} image(s) served and "
                    "replay.loop is off"
                )
            self._pending = (self._next_index, time.time_ns())
            self._next_index += 1

    def grab(self, timeout_s: float) -> Frame:
        """The frame of the last trigger; file frames' pixels are read-only and shared."""
        with self._lock:
            self._require_open()
            if self._pending is None:
                raise CameraError(f"replay camera {self.name}: grab() without trigger()")
            index, stamp = self._pending
            self._pending = None
            fault = self._faults.pop(0) if self._faults else None
            readout = self._readout_s
        if fault == "timeout" or readout > timeout_s:
            time.sleep(timeout_s)
            self._count_error("timeout")
            raise CameraTimeout(
                f"camera {self.name}: no frame within {timeout_s:.3f} s"
                + (" (injected fault)" if fault == "timeout" else
                   f" (replay readout takes {readout:.3f} s)")
            )
        if fault == "lost":
            with self._lock:
                self._open = False
            self._count_error("lost")
            raise CameraLost(f"camera {self.name}: device unplugged (injected fault)")
        if readout > 0:
            time.sleep(readout)
        with self._lock:
            data, src = self._render(index)
            self._frames += 1
            self._last_shape = data.shape
            features = dict(self._features)
        return Frame(
            camera=self.name, frame_id=index, host_timestamp_ns=stamp,
            pixel_format=self._pixel_format, data=data, device_timestamp_ns=None,
            exposure_us=features["ExposureTime"], gain_db=features["Gain"],
            complete=fault != "incomplete", source=src, extra={"backend": "replay"},
        )

    def close(self) -> None:
        """Forget the pending trigger; safe to call twice."""
        with self._lock:
            self._open = False
            self._pending = None

    def health(self) -> CameraHealth:
        """Connection state and counters."""
        with self._lock:
            detail = (f"{len(self._files)} file(s)" if self._source is None else "function scene")
            if self._last_error:
                detail += f"; last error: {self._last_error}"
            return CameraHealth(
                name=self.name, backend="replay", connected=self._open, detail=detail,
                serial=None, model="Replay", frames=self._frames, errors=self._errors,
                reconnects=max(0, self._opens - 1),
            )

    def get_feature(self, node: str) -> FeatureValue:
        """``ExposureTime`` [µs], ``Gain`` [dB], ``PixelFormat``, ``Width``, ``Height``, ..."""
        with self._lock:
            if node in self._features:
                return self._features[node]
            if node == "PixelFormat":
                return self._pixel_format
            if node in ("Width", "Height"):
                shape = self._last_shape or self._render(self._next_index)[0].shape
                return int(shape[1] if node == "Width" else shape[0])
            if node == "DeviceModelName":
                return "Replay"
            if node == "DeviceVendorName":
                return "inspection-station"
        raise self._unknown(node)

    def set_feature(self, node: str, value: FeatureValue) -> None:
        """Set ``ExposureTime`` [µs] or ``Gain`` [dB]; others are read-only or unknown."""
        if node in _READ_ONLY:
            raise CameraFeatureError(
                f"camera {self.name}: feature {node!r} = {value!r}: node is read-only on the "
                f"replay camera; writable: {', '.join(_WRITABLE)}"
            )
        if node not in _WRITABLE:
            raise self._unknown(node)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CameraFeatureError(
                f"camera {self.name}: feature {node!r} = {value!r}: needs a number "
                f"[{_WRITABLE[node][2]}]"
            )
        self._check_range(node, float(value))
        with self._lock:
            self._features[node] = float(value)

    # -- fault injection -----------------------------------------------------------------

    def inject_fault(self, kind: FaultKind, count: int = 1) -> None:
        """Make coming grabs fail, for tests of the rig and the daemon.

        ``timeout``: the next ``count`` grabs wait their timeout and raise ``CameraTimeout``;
        ``incomplete``: the next ``count`` frames come with ``complete=False``;
        ``lost``: the next grab raises ``CameraLost`` and closes the camera, and the following
        ``count - 1`` calls of ``open()`` fail with ``CameraLost`` (a device that stays away).
        """
        if count < 1:
            raise ValueError(f"inject_fault count must be >= 1, got {count}")
        with self._lock:
            if kind == "lost":
                self._faults.append("lost")
                self._lost_opens = count - 1
            elif kind in ("timeout", "incomplete"):
                self._faults.extend([kind] * count)
            else:
                raise ValueError(f"unknown fault {kind!r}; expected timeout, incomplete or lost")

    # -- internals ------------------------------------------------------------------------

    def _require_open(self) -> None:
        if not self._open:
            raise CameraLost(f"camera {self.name}: not open (open() it, or it was lost)")

    def _count_error(self, what: str) -> None:
        with self._lock:
            self._errors += 1
            self._last_error = what

    def _check_range(self, node: str, value: float) -> None:
        lo, hi, unit = _WRITABLE[node]
        if not lo <= value <= hi:
            raise CameraFeatureError(
                f"camera {self.name}: feature {node!r} = {value!r} is out of range; "
                f"allowed {lo:g} .. {hi:g} [{unit}]"
            )

    def _unknown(self, node: str) -> CameraFeatureError:
        return CameraFeatureError(
            f"camera {self.name}: no feature {node!r} on the replay camera; it has: "
            f"{', '.join([*_WRITABLE, *_READ_ONLY])}"
        )

    def _render(self, index: int) -> tuple[pixels.Pixels, str]:
        """Pixels of frame ``index`` with exposure and gain applied.

        File frames come from the cache as read-only arrays, shared by every frame served
        from them (serving a cached 20 MP frame costs microseconds, not a copy); a scene
        function's frames are new arrays.
        """
        factor = pixels.exposure_factor(
            self._features["ExposureTime"], self._features["Gain"], REFERENCE_EXPOSURE_US
        )
        if self._source is not None:
            feats: dict[str, FeatureValue] = {**self._features, "PixelFormat": self._pixel_format}
            base = self._from_scene(np.asarray(self._source(index, feats)))
            src = f"function:{getattr(self._source, '__name__', 'scene')}"
            return (base if factor == 1.0 else
                    pixels.apply_factor(base, factor, self._pixel_format)), src
        file_index = index % len(self._files)
        src = str(self._files[file_index])
        base = self._from_cache((file_index, 1.0), lambda: self._decode(file_index))
        if factor == 1.0:
            return base, src
        return self._from_cache(
            (file_index, factor), lambda: pixels.apply_factor(base, factor, self._pixel_format)
        ), src

    def _from_scene(self, arr: npt.NDArray[np.generic]) -> pixels.Pixels:
        channels, _ = pixel_format_info(self._pixel_format)
        dtype = pixels.dtype_of(self._pixel_format)
        layout_ok = (arr.ndim == 2 and channels == 1) or (
            arr.ndim == 3 and channels > 1 and arr.shape[2] == channels
        )
        if arr.dtype == dtype and layout_ok:
            top = pixels.max_value(self._pixel_format)
            out: pixels.Pixels = np.minimum(arr, top).astype(dtype)
            return out
        return pixels.convert(arr, self._pixel_format)

    def _from_cache(self, key: tuple[int, float], make: Callable[[], pixels.Pixels]
                ) -> pixels.Pixels:
        """The read-only array for ``key`` (file index, exposure factor), made once and kept
        while ``cache_bytes`` allows (least recently used dropped first)."""
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        arr = make()
        arr.setflags(write=False)
        if self._cache_bytes > 0 and arr.nbytes <= self._cache_bytes:
            self._cache[key] = arr
            self._cached += arr.nbytes
            while self._cached > self._cache_bytes and self._cache:
                _, dropped = self._cache.popitem(last=False)
                self._cached -= dropped.nbytes
        return arr

    def _decode(self, file_index: int) -> pixels.Pixels:
        """Decode, scale and convert file ``file_index`` to the served format."""
        path = self._files[file_index]
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise CameraError(f"replay camera {self.name}: cannot decode image file {path}")
        if raw.ndim == 3 and raw.shape[2] == 3:
            raw = cv2.cvtColor(raw, cv2.COLOR_BGR2RGB)
        elif raw.ndim == 3 and raw.shape[2] == 4:
            raw = cv2.cvtColor(raw, cv2.COLOR_BGRA2RGBA)
        decoded: npt.NDArray[np.generic] = np.asarray(raw)
        decoded = pixels.resize(decoded, self._width, self._height)
        return pixels.convert(decoded, self._pixel_format)
