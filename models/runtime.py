"""The model runtime: the one implementation of how a network is run, shared by training,
evaluation and the station.

What lives here, and nowhere else:

- device choice (:func:`select_device`);
- input normalisation (:func:`normalise`, :func:`grey_batch`): pixels scaled to [0, 1],
  grey replicated to the network's channels, then the checkpoint's mean / std;
- padding to the network's size divisor (:func:`pad_to_divisor`, reflect, split evenly
  between the two sides, the same rule the tiler's whole-frame mode uses);
- the network's outputs (:func:`split_outputs`): segmentation logits, and the image-level
  logits of networks that have an image head;
- logits -> per-defect-class probabilities (:func:`logits_to_probs`) and the part-level score
  of the image head (:func:`head_score`).

The pipeline's tiler (``pipeline.tiling``) cuts frames into tiles and blends them back; every
tile goes through the functions above. :func:`predict_image` runs one small grey image whole
(as training validation does); ``pipeline.Inspector`` gives the same probabilities in its
``whole`` mode (a test keeps it so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from config.errors import ModelError
from models.build import SIZE_DIVISOR

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

#: Networks return either segmentation logits, or (segmentation logits, image logits).
NetOutput = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def select_device(preference: str) -> torch.device:
    """``auto`` -> CUDA when present, else the CPU; ``cuda``/``cuda:N`` without a GPU is an
    error that says what to set instead."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" or preference.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ModelError(
                f"device {preference!r}: torch sees no CUDA device here; use 'auto' or 'cpu'"
            )
        return torch.device(preference)
    raise ModelError(f"device must be auto, cpu, cuda or cuda:N, got {preference!r}")


def normalise(
    x01: torch.Tensor, mean: Sequence[float], std: Sequence[float], in_channels: int
) -> torch.Tensor:
    """``(N, C, H, W)`` pixels in [0, 1] (C = 1 or the network's) -> network input.

    Grey (C = 1) is replicated to ``in_channels``; then ``(x - mean[c]) / std[c]``.
    """
    if x01.shape[1] != in_channels:
        if x01.shape[1] != 1:
            raise ModelError(
                f"input has {x01.shape[1]} channels; the network takes {in_channels} "
                "(only grey is replicated)"
            )
        x01 = x01.expand(-1, in_channels, -1, -1)
    m = torch.tensor(mean, dtype=x01.dtype, device=x01.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x01.dtype, device=x01.device).view(1, -1, 1, 1)
    return (x01 - m) / s


def grey_batch(
    images: Sequence[U8], mean: Sequence[float], std: Sequence[float], in_channels: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Grey uint8 images of one size -> normalised float32 ``(N, in_channels, H, W)``."""
    x = torch.from_numpy(np.stack(images)).to(device).float().div_(255.0).unsqueeze(1)
    return normalise(x, mean, std, in_channels)


def divisor_pad(height: int, width: int, divisor: int = SIZE_DIVISOR
                ) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) that bring ``height`` x ``width`` to multiples of
    ``divisor``, split evenly (the extra pixel goes to the bottom / right)."""
    ph, pw = (-height) % divisor, (-width) % divisor
    return ph // 2, ph - ph // 2, pw // 2, pw - pw // 2


def reflect_pad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Reflect-pad ``(N, C, H, W)`` by (top, bottom, left, right), any amount.

    Pads larger than the frame are done in several reflections (torch allows < size each); a
    1-pixel dimension, which cannot be reflected, is replicated.
    """
    top, bottom, left, right = pad
    while top or bottom or left or right:
        h, w = x.shape[-2:]
        t, b = min(top, h - 1), min(bottom, h - 1)
        lft, r = min(left, w - 1), min(right, w - 1)
        if (t, b, lft, r) == (0, 0, 0, 0):
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        x = F.pad(x, (lft, r, t, b), mode="reflect")
        top, bottom, left, right = top - t, bottom - b, left - lft, right - r
    return x


def pad_to_divisor(
    x: torch.Tensor, divisor: int = SIZE_DIVISOR
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Reflect-pad ``(N, C, H, W)`` to multiples of ``divisor``; returns the pad used."""
    pad = divisor_pad(int(x.shape[-2]), int(x.shape[-1]), divisor)
    return reflect_pad(x, pad), pad


def split_outputs(out: NetOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(segmentation logits ``(N, C, H, W)``, image logits ``(N, K)`` or None)."""
    if isinstance(out, tuple | list):
        if len(out) != 2:
            raise ModelError(f"a network returned {len(out)} outputs; expected 1 or 2")
        return out[0], out[1]
    return out, None


def logits_to_probs(logits: torch.Tensor, head: str) -> torch.Tensor:
    """Per-defect-class probabilities ``(N, K, H, W)`` float32 from logits of either head
    (softmax drops its background channel; sigmoid has none)."""
    if head == "softmax":
        return torch.softmax(logits.float(), dim=1)[:, 1:]
    if head == "sigmoid":
        return torch.sigmoid(logits.float())
    raise ModelError(f"unknown head {head!r}; valid: softmax, sigmoid")


def class_map(probs: F32, thresholds: Sequence[float]) -> U8:
    """Class map (0 = background) of one image's probabilities ``(K, H, W)``: a pixel takes
    the most probable class among those reaching their threshold (the host twin of
    ``pipeline.postprocess.classify``; a test keeps them equal)."""
    ths = np.asarray(thresholds, np.float32).reshape(-1, 1, 1)
    passing = np.where(probs >= ths, probs, -1.0)
    best = passing.argmax(axis=0)
    out: U8 = np.where(passing.max(axis=0) >= 0, best + 1, 0).astype(np.uint8)
    return out


def head_score(image_logits: torch.Tensor) -> torch.Tensor:
    """The part-level defect score of an image head: the largest class logit, ``(N,)``.

    Logits, not probabilities: sigmoid outputs of a confident model saturate at exactly 1.0,
    and a threshold among ties measures nothing.
    """
    return image_logits.float().amax(dim=1)


def forward_image(
    model: nn.Module,
    mean: Sequence[float],
    std: Sequence[float],
    in_channels: int,
    image: U8,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One grey image, whole: segmentation logits ``(1, C, H, W)`` cropped back to the image,
    and the image logits ``(1, K)`` (None without an image head). Gradients as the caller's
    mode says."""
    h, w = image.shape
    x, pad = pad_to_divisor(grey_batch([image], mean, std, in_channels, device))
    seg, img = split_outputs(model(x))
    top, _, left, _ = pad
    return seg[:, :, top:top + h, left:left + w], img


def flip_mean(
    run: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Test-time flips: ``run`` on the ``(N, C, H, W)`` input ``x`` and on its left-right and
    top-bottom mirrors; the mean of the three probability maps (each mirrored back) and of
    the three image logits (None when ``run`` gives none)."""
    probs, head = run(x)
    for dim in (3, 2):
        p2, h2 = run(torch.flip(x, (dim,)))
        probs = probs + torch.flip(p2, (dim,))
        head = None if head is None or h2 is None else head + h2
    return probs / 3, None if head is None else head / 3


@torch.no_grad()
def predict_image(
    model: nn.Module,
    head: str,
    mean: Sequence[float],
    std: Sequence[float],
    in_channels: int,
    image: U8,
    device: torch.device | str = "cpu",
    flips: bool = False,
) -> tuple[F32, F32 | None]:
    """One grey image, whole: per-defect-class probabilities ``(K, H, W)`` and the image
    logits ``(K,)`` (None without an image head). ``flips`` averages over horizontal and
    vertical flips (probabilities, and image logits)."""

    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        seg, img = forward_image(model, mean, std, in_channels, x[0, 0].numpy(), device)
        return logits_to_probs(seg, head), img

    x = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    probs, img = flip_mean(run, x) if flips else run(x)
    out: F32 = probs[0].float().cpu().numpy()
    logits = None if img is None else img[0].float().cpu().numpy().astype(np.float32)
    return out.astype(np.float32, copy=False), logits
