"""Camera drivers: replay (files or a function), GenICam (harvesters, one worker process per
camera), and the rig that acquires them together.

Public API::

    from drivers.cameras import open_camera, CameraRig

    cams = [open_camera(c, cfg.base_dir) for c in cfg.cameras]   # not opened yet
    rig = CameraRig(cams, on_event=publish_event)
    rig.open()
    frames = rig.acquire()

Backends are imported on first use (PEP 562): the GenICam worker processes start by importing
this package, and must not pay for OpenCV; replay-only stations never load the GenICam side.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from config.cameras import CameraConfig
from config.errors import CameraError
from drivers.cameras.base import Camera, CameraHealth
from drivers.cameras.rig import CameraRig

if TYPE_CHECKING:
    from drivers.cameras._genicam import GenICamCamera, ProducerReport, discover
    from drivers.cameras._replay import (
        REFERENCE_EXPOSURE_US,
        ReplayCamera,
        SceneFunction,
        match_images,
    )

__all__ = [
    "REFERENCE_EXPOSURE_US",
    "Camera",
    "CameraHealth",
    "CameraRig",
    "GenICamCamera",
    "ProducerReport",
    "ReplayCamera",
    "SceneFunction",
    "discover",
    "match_images",
    "open_camera",
]

_LAZY = {
    "GenICamCamera": "drivers.cameras._genicam",
    "ProducerReport": "drivers.cameras._genicam",
    "discover": "drivers.cameras._genicam",
    "ReplayCamera": "drivers.cameras._replay",
    "REFERENCE_EXPOSURE_US": "drivers.cameras._replay",
    "SceneFunction": "drivers.cameras._replay",
    "match_images": "drivers.cameras._replay",
}


def open_camera(cfg: CameraConfig, base_dir: Path) -> Camera:
    """The camera ``cfg`` describes, not opened yet; ``base_dir`` resolves replay globs."""
    if cfg.backend == "replay":
        from drivers.cameras._replay import ReplayCamera

        return ReplayCamera.from_config(cfg, base_dir)
    if cfg.backend in ("genicam", "pylon"):
        from drivers.cameras._genicam import GenICamCamera

        return GenICamCamera(cfg)
    raise CameraError(
        f"camera {cfg.name}: backend {cfg.backend!r} is unknown; use 'replay', 'genicam' "
        "or 'pylon'"
    )


def __getattr__(name: str) -> object:
    """Backend classes and helpers, imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'drivers.cameras' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
