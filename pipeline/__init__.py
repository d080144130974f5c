"""Tensors in, defects out: preprocess, tiling, inference, postprocess, verdict.

Device-agnostic torch (CUDA when present, else the CPU), no sockets. ``Inspector`` is the
entry point shared by the daemon and ``station inspect``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.inspector import Inspector

__all__ = ["Inspector"]


def __getattr__(name: str) -> Any:
    # Lazy: importing pipeline.types must not pull in torch.
    if name == "Inspector":
        from pipeline.inspector import Inspector

        return Inspector
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
