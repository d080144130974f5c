"""Run the network: device choice, precision, memory format, batching, heads.

On CUDA the model runs in half precision (float16 or bfloat16) and channels-last memory (all
configurable); on the CPU in float32. The caller wraps everything in ``torch.inference_mode()``.
The output is per-class probabilities in float32 (softmax over all classes, or independent
sigmoids); a network that also returns image-level logits ``(N, J)`` (a pair
``(segmentation logits, image logits)``) gets the pair (probabilities, image logits float32).
"""

from __future__ import annotations

import structlog
import torch
from torch import nn

from config.errors import ModelError

log = structlog.get_logger(__name__)


def select_device(preference: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(
                "pipeline.device is 'cuda' but torch sees no CUDA device; set it to 'auto' or "
                "'cpu'"
            )
        return torch.device("cuda")
    if preference == "cpu":
        return torch.device("cpu")
    raise ModelError(f"pipeline.device must be auto, cpu or cuda, got {preference!r}")


class Segmenter:
    """A network on its device, turning normalised input batches into probabilities.

    ``head``: ``softmax`` (channels = all classes, background first) or ``sigmoid``
    (channels = defect classes). ``half`` and ``channels_last`` apply on CUDA only.
    """

    def __init__(
        self,
        model: nn.Module,
        head: str,
        device: torch.device,
        *,
        half: bool = True,
        half_dtype: str = "float16",
        channels_last: bool = True,
        compile_model: bool = False,
    ) -> None:
        if head not in ("softmax", "sigmoid"):
            raise ModelError(f"unknown head {head!r}; valid: softmax, sigmoid")
        halves = {"float16": torch.float16, "bfloat16": torch.bfloat16}
        if half_dtype not in halves:
            raise ModelError(f"half_dtype must be float16 or bfloat16, got {half_dtype!r}")
        self.head = head
        self.device = device
        cuda = device.type == "cuda"
        self.dtype = halves[half_dtype] if (half and cuda) else torch.float32
        self.memory_format = (
            torch.channels_last if (channels_last and cuda) else torch.contiguous_format
        )
        model = model.eval().to(device=device, dtype=self.dtype)
        model = model.to(memory_format=self.memory_format)
        for p in model.parameters():
            p.requires_grad_(False)
        self.model: nn.Module = model
        self._forward: nn.Module = model
        if compile_model:
            try:
                self._forward = torch.compile(model)  # type: ignore[assignment]
            except Exception as exc:  # compile support varies by platform
                raise ModelError(f"torch.compile failed: {exc}") from exc
        log.debug("segmenter ready", device=str(device), dtype=str(self.dtype), head=head)

    def logits(self, batch: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Raw network output for a ``(N, C, H, W)`` batch (in the model's dtype): the
        segmentation logits, or (segmentation logits, image logits)."""
        x = batch.to(device=self.device, dtype=self.dtype).contiguous(
            memory_format=self.memory_format
        )
        out = self._forward(x)
        if isinstance(out, torch.Tensor):
            return out
        if isinstance(out, (tuple, list)) and len(out) == 2 and all(
                isinstance(o, torch.Tensor) for o in out):
            return out[0], out[1]
        raise ModelError(
            "the network must return segmentation logits (N, K, H, W) or a pair (segmentation "
            f"logits, image logits (N, J)), got {type(out).__name__}"
        )

    def __call__(self, batch: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Probabilities ``(N, K, H, W)`` float32 for a normalised ``(N, C, H, W)`` batch, or
        (probabilities, image logits ``(N, J)`` float32) for a network with an image head."""
        out = self.logits(batch)
        seg, image = (out, None) if isinstance(out, torch.Tensor) else out
        logits = seg.float()
        probs = torch.softmax(logits, dim=1) if self.head == "softmax" else torch.sigmoid(logits)
        return probs if image is None else (probs, image.float())
