"""Finding GenTL producers (.cti files): 'viky', explicit paths, GENICAM_GENTL64_PATH.

Nothing here imports harvesters: the parent process only resolves paths, the camera worker
processes load them.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from config.errors import CameraNotFound

#: The environment variable the GenTL standard defines for 64-bit producers.
GENTL_PATH_VAR = "GENICAM_GENTL64_PATH"


def viky_cti() -> Path:
    """The ``viky.cti`` simulator shipped inside the installed ``genicam`` wheel."""
    spec = importlib.util.find_spec("genicam")
    if spec is None or not spec.submodule_search_locations:
        raise CameraNotFound(
            "'viky' producer: the genicam package is not installed (pip install genicam)"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "viky.cti"
        if path.is_file():
            return path
    raise CameraNotFound(
        "'viky' producer: the installed genicam package has no viky.cti "
        f"(looked in {', '.join(spec.submodule_search_locations)}); genicam >= 1.4 ships it"
    )


def env_producers(environ: dict[str, str] | None = None) -> list[Path]:
    """Every .cti file in the folders (or files) named by ``GENICAM_GENTL64_PATH``."""
    env = os.environ if environ is None else environ
    found: list[Path] = []
    for entry in env.get(GENTL_PATH_VAR, "").split(os.pathsep):
        if not entry.strip():
            continue
        p = Path(entry).expanduser()
        if p.is_file() and p.suffix == ".cti":
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(c for c in p.iterdir() if c.suffix == ".cti" and c.is_file()))
    return found


def resolve_producers(
    entries: list[str], *, include_env: bool = True, environ: dict[str, str] | None = None
) -> list[Path]:
    """Configured producers (``'viky'`` or paths) plus those of ``GENICAM_GENTL64_PATH``,
    resolved, de-duplicated, in order. A configured path that does not exist is an error
    naming it; the environment's entries are best effort."""
    paths: list[Path] = []
    for entry in entries:
        if entry.strip().lower() == "viky":
            paths.append(viky_cti())
            continue
        p = Path(entry).expanduser()
        if not p.is_file():
            raise CameraNotFound(
                f"GenTL producer {entry!r} not found; install the vendor's SDK or fix "
                f"genicam.cti (a path to a .cti file, or 'viky'); {GENTL_PATH_VAR} is searched "
                "too"
            )
        paths.append(p)
    if include_env:
        paths.extend(env_producers(environ))
    unique: dict[Path, None] = {}
    for p in paths:
        unique.setdefault(p.resolve(), None)
    if not unique:
        raise CameraNotFound(
            f"no GenTL producer configured and {GENTL_PATH_VAR} names none; set genicam.cti"
        )
    return list(unique)
