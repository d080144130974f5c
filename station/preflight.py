"""Checks of the files a config names, made before anything slow (the model) loads.

``station config check`` lists the problems; ``station run`` and ``station inspect`` refuse to
start on them (``ConfigError``, exit 2) within a second instead of after loading the model.

Relative paths in a config file are resolved against the folder of that file (for a shipped
config such as ``default``, the repository's ``config/`` folder), not against the working
directory; every message says what a path resolved to.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from config import StationConfig
from config.errors import ConfigError


def _relative_note(cfg: StationConfig, value: str) -> str:
    if Path(value).expanduser().is_absolute():
        return ""
    return f" (a relative path is resolved against the config file's folder {cfg.base_dir})"


def path_problems(cfg: StationConfig, *, cameras: bool = True) -> list[str]:
    """What is wrong with the checkpoint, replay images and region masks ``cfg`` names.

    ``cameras=False`` skips the replay images (``station inspect`` reads its own files).
    """
    from drivers.cameras import match_images

    problems: list[str] = []
    checkpoint = cfg.model.checkpoint
    if checkpoint != "default":
        path = cfg.resolve(checkpoint)
        if not path.is_file():
            problems.append(
                f"model.checkpoint = {checkpoint!r}: {path} is not a file"
                f"{_relative_note(cfg, checkpoint)}; give an existing checkpoint, or 'default' "
                "for the shipped model"
            )
    if cameras:
        for i, cam in enumerate(cfg.cameras):
            if cam.backend != "replay":
                continue
            patterns = list(cam.replay.images)
            if not match_images(patterns, cfg.base_dir):
                notes = {_relative_note(cfg, p) for p in patterns} - {""}
                problems.append(
                    f"cameras[{i}] ({cam.name}).replay.images = {patterns}: no image file "
                    f"matches{''.join(sorted(notes))}; give globs or folders of image files"
                )
    for camera, region in cfg.rules.regions.items():
        if region.mask is None:
            continue
        path = cfg.resolve(region.mask)
        where = f"rules.regions.{camera}.mask = {region.mask!r}"
        if not path.is_file():
            problems.append(
                f"{where}: {path} is not a file{_relative_note(cfg, region.mask)}; give a mask "
                "image (non-zero = inspect) or remove the key"
            )
        elif cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) is None:
            problems.append(f"{where}: {path} cannot be read as an image (PNG, BMP, TIFF)")
    if cfg.mqtt.enabled:
        named = [("mqtt.password_file", cfg.mqtt.password_file),
                 *((f"mqtt.tls.{k}", getattr(cfg.mqtt.tls, k))
                   for k in ("ca_file", "cert_file", "key_file"))]
        for key, value in named:
            if value is not None and not cfg.resolve(value).is_file():
                problems.append(
                    f"{key} = {value!r}: {cfg.resolve(value)} is not a file"
                    f"{_relative_note(cfg, value)}; give the file or remove the key "
                    "(docs/fleet.md)"
                )
    return problems


def require_paths(cfg: StationConfig, *, cameras: bool = True) -> None:
    """Raise ``ConfigError`` listing every problem ``path_problems`` finds."""
    problems = path_problems(cfg, cameras=cameras)
    if problems:
        raise ConfigError(
            "the config names files that are missing:\n  - " + "\n  - ".join(problems)
        )
