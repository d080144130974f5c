"""GenICam camera through harvesters (placeholder: the worker-process backend lands next)."""

from __future__ import annotations

from config.cameras import CameraConfig
from config.errors import CameraError
from drivers.cameras.base import CameraHealth
from drivers.frame import Frame


class GenICamCamera:
    """Placeholder until the worker-process backend is committed."""

    def __init__(self, cfg: CameraConfig) -> None:
        """Remember the config."""
        self.name = cfg.name
        self.timeout_s = cfg.timeout_s

    def open(self) -> None:
        """Not implemented yet."""
        raise CameraError(f"camera {self.name}: GenICam backend not committed yet")

    def trigger(self) -> None:
        """Not implemented yet."""
        self.open()

    def grab(self, timeout_s: float) -> Frame:
        """Not implemented yet."""
        raise CameraError(f"camera {self.name}: GenICam backend not committed yet")

    def close(self) -> None:
        """Nothing to close."""

    def health(self) -> CameraHealth:
        """Never connected."""
        return CameraHealth(name=self.name, backend="genicam", connected=False)

    def get_feature(self, node: str) -> bool | int | float | str:
        """Not implemented yet."""
        raise CameraError(f"camera {self.name}: GenICam backend not committed yet")

    def set_feature(self, node: str, value: bool | int | float | str) -> None:
        """Not implemented yet."""
        raise CameraError(f"camera {self.name}: GenICam backend not committed yet")
