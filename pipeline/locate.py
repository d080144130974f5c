"""Where the image head looks: a location for a part that the image head alone failed.

The image head (:class:`models.build.MaxImageHead`) scores every position of the deepest
encoder features (one cell per 32 x 32 input pixels) and takes the maximum. A part can fail on
that score while the segmentation draws no region (small blowholes, mostly), and then the
verdict had no place to show. This module gives it one: the cells of the most likely class
whose logit reaches the head's threshold, connected to the strongest cell, as a box in frame
pixels (just the strongest cell when none reaches it, e.g. when the threshold was met by the
mean over test-time flips).

:func:`head_cells` runs the encoder and the head's 1 x 1 convolution once over the whole frame
(only for cameras the head failed, so it costs nothing on good parts); :func:`hot_spot` is
plain numpy, tested on its own.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from models.build import SIZE_DIVISOR, MaxImageHead
from models.runtime import divisor_pad, reflect_pad

#: x, y, width, height in frame pixels
Box = tuple[int, int, int, int]


def has_head_cells(model: nn.Module) -> bool:
    """Whether the network has an image head whose cells can be read (an smp model with a
    :class:`MaxImageHead` on its encoder)."""
    return isinstance(getattr(model, "classification_head", None), MaxImageHead) and hasattr(
        model, "encoder")


@torch.inference_mode()
def head_cells(model: nn.Module, x: torch.Tensor) -> npt.NDArray[np.float32]:
    """Per-cell image-head logits ``(J, h, w)`` float32 (host) of the normalised frame ``x``
    ``(1, C, H, W)``, reflect-padded to the size divisor, split evenly
    (:func:`models.runtime.divisor_pad`, as :func:`pipeline.tiling.predict_whole` pads)."""
    if not has_head_cells(model):
        raise ValueError("the model has no image head with cells (model.image_head: false)")
    head = getattr(model, "classification_head")  # noqa: B009
    encoder = getattr(model, "encoder")  # noqa: B009
    dtype = next(head.conv.parameters()).dtype
    xp = reflect_pad(x.to(dtype), divisor_pad(int(x.shape[-2]), int(x.shape[-1])))
    cells = head.conv(encoder(xp)[-1])[0].float()
    out: npt.NDArray[np.float32] = cells.cpu().numpy()
    return out


def hot_spot(
    cells: npt.NDArray[np.float32], threshold: float, height: int, width: int,
    divisor: int = SIZE_DIVISOR,
) -> tuple[Box, int, float]:
    """(box, class index, logit) of the head's strongest cell and the cells of its class at or
    above ``threshold`` connected to it (8-neighbours), in pixels of a ``height`` x ``width``
    frame padded by :func:`models.runtime.divisor_pad` before the encoder; clipped to the frame."""
    if cells.ndim != 3 or cells.size == 0:
        raise ValueError(f"cells must be (classes, h, w) and not empty, got shape {cells.shape}")
    k, i, j = (int(v) for v in np.unravel_index(int(np.argmax(cells)), cells.shape))
    best = float(cells[k, i, j])
    hot = (cells[k] >= threshold).astype(np.uint8)
    hot[i, j] = 1
    _, labels = cv2.connectedComponents(hot, connectivity=8)
    rows, cols = np.nonzero(labels == labels[i, j])
    top, bottom, left, right = divisor_pad(height, width, divisor)
    stride_y = (height + top + bottom) / cells.shape[1]
    stride_x = (width + left + right) / cells.shape[2]
    y0 = max(0, int(rows.min() * stride_y) - top)
    y1 = min(height, int((rows.max() + 1) * stride_y) - top)
    x0 = max(0, int(cols.min() * stride_x) - left)
    x1 = min(width, int((cols.max() + 1) * stride_x) - left)
    return (x0, y0, max(1, x1 - x0), max(1, y1 - y0)), k, best


__all__ = ["Box", "has_head_cells", "head_cells", "hot_spot"]
