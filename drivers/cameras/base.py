"""The camera interface every backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from drivers.frame import Frame


@dataclass(frozen=True)
class CameraHealth:
    """What ``status`` reports about one camera."""

    name: str
    backend: str
    connected: bool
    detail: str = ""
    serial: str | None = None
    model: str | None = None
    frames: int = 0
    errors: int = 0
    reconnects: int = 0


class Camera(Protocol):
    """A camera: open, configure, trigger, grab -> Frame, close, health.

    ``trigger`` starts one exposure (software trigger, or starting single-frame acquisition);
    ``grab`` waits at most ``timeout_s`` for that frame and returns it with its pixels copied
    out of the producer's buffer. Errors are ``config.errors.CameraError`` subclasses.
    """

    name: str

    def open(self) -> None:
        """Connect and apply the configured features."""

    def trigger(self) -> None:
        """Start one exposure."""

    def grab(self, timeout_s: float) -> Frame:
        """The frame of the last trigger, within ``timeout_s``."""
        ...

    def close(self) -> None:
        """Stop acquisition and release the device; safe to call twice."""

    def health(self) -> CameraHealth:
        """Connection state and counters."""
        ...

    def get_feature(self, node: str) -> bool | int | float | str:
        """Read a GenICam-style feature (``ExposureTime``, ``Gain``, ...)."""
        ...

    def set_feature(self, node: str, value: bool | int | float | str) -> None:
        """Write a feature; ``CameraFeatureError`` names the node and what it allows."""
