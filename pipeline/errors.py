"""torch's runtime failures translated into the station's own ``InferenceError``, with the fix.

torch reports running out of memory and CUDA failures as ``RuntimeError`` (or its subclass
``torch.OutOfMemoryError``). Left alone they reach the cycle as "internal error", which reads
like a bug and says nothing about what to change. At the pipeline's edge they become
``InferenceError`` naming where it happened, on which device, the settings in force and what to
do; anything else (a real bug, e.g. a shape mismatch) passes through untouched::

    with torch_errors("inference", device, {"pipeline.batch_size": 8}):
        probs = segmenter(batch)

After running out of CUDA memory the failed work's tensors are released (torch's traceback,
which holds them, is dropped; the message keeps what it said) and the allocator's cache is
emptied, so the memory is free at once, not only when the error has been handled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import AbstractContextManager
from types import TracebackType

import torch

from config.errors import InferenceError

#: Message fragments of an allocation failure (CUDA, the CPU allocator, MPS).
_OOM = re.compile(r"out of memory|can't allocate memory|not enough memory|"
                  r"CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED", re.I)
#: Message fragments of a failing GPU, driver or CUDA library.
_DEVICE = re.compile(r"CUDA error|CUDA driver|CUBLAS_STATUS|CUDNN_STATUS|cuDNN error|"
                     r"device-side assert|no kernel image|NVML|CUDA-capable device|"
                     r"an illegal memory access", re.I)
#: Longest part of torch's message kept in ours (its OOM text runs to several lines).
_MAX_DETAIL = 300


def _detail(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL - 1] + "…"


def _settings(settings: Mapping[str, object] | None) -> str:
    if not settings:
        return ""
    return " (" + ", ".join(f"{k} = {v}" for k, v in settings.items()) + ")"


def translate_torch_error(
    exc: BaseException, where: str, device: torch.device | str,
    settings: Mapping[str, object] | None = None,
) -> InferenceError | None:
    """The ``InferenceError`` for ``exc``, or ``None`` when it is not a memory or device
    failure (then it is a bug and stays what it is).

    ``where``: what was running (``"inference"``, ``"preprocess"``); ``settings``: the config
    keys that size the work, with their values, named in the message.
    """
    if not isinstance(exc, RuntimeError):
        return None
    dev = str(device)
    cuda = dev.startswith("cuda")
    text = str(exc)
    head = f"{where} on {dev}{_settings(settings)}"
    if isinstance(exc, torch.OutOfMemoryError) or _OOM.search(text):
        memory = "GPU memory" if cuda else "memory"
        fix = ("lower pipeline.batch_size or pipeline.tile_size, keep pipeline.half true, "
               "or free the GPU (`nvidia-smi` lists the processes holding it)" if cuda else
               "lower pipeline.batch_size or pipeline.tile_size, or give the machine more "
               "memory")
        return InferenceError(f"{head} ran out of {memory}: {_detail(exc)}; {fix}")
    if _DEVICE.search(text):
        return InferenceError(
            f"{head}: the GPU or its driver failed: {_detail(exc)}; check `nvidia-smi` and the "
            "kernel log (`dmesg`: Xid errors), restart the station (a failed CUDA context "
            "stays unusable; systemd restarts it), or set pipeline.device: cpu"
        )
    return None


class _TorchErrors:
    """The context manager :func:`torch_errors` returns (a class, not a generator: the
    generator machinery would keep torch's traceback, and with it the failed work's tensors,
    alive in its own frame)."""

    def __init__(self, where: str, device: torch.device | str,
                 settings: Mapping[str, object] | None) -> None:
        self.where, self.device, self.settings = where, device, settings

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            return
        translated = translate_torch_error(exc, self.where, self.device, self.settings)
        if translated is None:
            return  # not ours to translate: it propagates unchanged
        if isinstance(exc, torch.OutOfMemoryError):
            # torch's traceback holds the failed work's frames and so its tensors: drop it,
            # then give the cached blocks back, so the memory is free while the error travels.
            exc.__traceback__ = None
            del tb
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        raise translated from exc


def torch_errors(
    where: str, device: torch.device | str, settings: Mapping[str, object] | None = None,
) -> AbstractContextManager[None]:
    """Run the block; a torch memory or device failure in it becomes ``InferenceError`` (see
    :func:`translate_torch_error`); everything else passes through unchanged."""
    return _TorchErrors(where, device, settings)
