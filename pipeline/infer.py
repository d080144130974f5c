"""Run the network: device choice, precision, memory format, batching, heads.

On CUDA the model runs in half precision (float16 or bfloat16) and channels-last memory (all
configurable); on the CPU in float32. The caller wraps everything in ``torch.inference_mode()``.
The output is always per-class probabilities in float32: softmax over all classes, or
independent sigmoids.

Networks with an image head also return image-level logits per batch item. Called as a function
the segmenter keeps their maximum since :meth:`Segmenter.begin_frame`
(:attr:`Segmenter.image_logits`); :meth:`Segmenter.predict` is the side-effect-free form
(probabilities, image logits), which the tiler uses: it can be captured in a CUDA graph, and
the tiler takes the maximum over tiles itself. Device choice and the output conventions come
from :mod:`models.runtime`, the one runtime that training and evaluation use too.
"""

from __future__ import annotations

import structlog
import torch
from torch import nn

from config.errors import ModelError
from models.runtime import logits_to_probs, select_device, split_outputs

log = structlog.get_logger(__name__)

__all__ = ["Segmenter", "select_device"]


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
        self.image_logits: torch.Tensor | None = None
        if compile_model:
            try:
                self._forward = torch.compile(model)  # type: ignore[assignment]
            except Exception as exc:  # compile support varies by platform
                raise ModelError(f"torch.compile failed: {exc}") from exc
        log.debug("segmenter ready", device=str(device), dtype=str(self.dtype), head=head)

    def begin_frame(self) -> None:
        """Forget the image logits of the previous frame."""
        self.image_logits = None

    def _input(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.to(device=self.device, dtype=self.dtype).contiguous(
            memory_format=self.memory_format
        )

    def _probs(self, seg: torch.Tensor) -> torch.Tensor:
        logits = seg.float()
        if self.head == "softmax":
            return torch.softmax(logits, dim=1)
        return logits_to_probs(logits, self.head)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Segmentation logits for a ``(N, C, H, W)`` batch (in the model's dtype); image
        logits, when the network has an image head, update :attr:`image_logits`."""
        seg, img = split_outputs(self._forward(self._input(batch)))
        if img is not None:
            batch_max = img.float().amax(dim=0, keepdim=True)
            self.image_logits = (batch_max if self.image_logits is None
                                 else torch.maximum(self.image_logits, batch_max))
        return seg

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities ``(N, K, H, W)`` float32 for a normalised ``(N, C, H, W)`` batch.

        Softmax heads keep their background channel here (``postprocess`` drops it)."""
        return self._probs(self.logits(batch))

    def predict(self, batch: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Like calling it, without side effects (so that a CUDA graph can hold it):
        probabilities, or (probabilities, image logits ``(N, J)`` float32) for a network with
        an image head."""
        seg, img = split_outputs(self._forward(self._input(batch)))
        probs = self._probs(seg)
        return probs if img is None else (probs, img.float())
