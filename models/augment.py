"""Training augmentation with torchvision.transforms.v2.

Why torchvision v2 (not albumentations or kornia): torchvision is already a dependency of the
station (it comes with torch and segmentation-models-pytorch), its v2 transforms move an image
and its mask together (``tv_tensors.Mask`` is resampled with nearest neighbour), they run on
tensors on the CPU or the GPU, and they are maintained by the PyTorch team. No new package.

Colour: brightness, contrast, gamma, Gaussian noise. Geometry: horizontal / vertical flips,
right-angle rotations (square patches keep their shape), a small affine (rotation, shift,
scale). Every probability and range is a field of :class:`AugmentConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (probabilities in 0..1)."""

    flip_p: float = 0.5
    rot90_p: float = 0.5
    affine_p: float = 0.3
    affine_degrees: float = 10.0
    affine_translate: float = 0.05
    affine_scale: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.2
    contrast: float = 0.2
    gamma: tuple[float, float] = (0.8, 1.25)
    gamma_p: float = 0.3
    noise_sigma: float = 0.02
    noise_p: float = 0.3


class Augmenter:
    """Callable ``(image, mask) -> (image, mask)``.

    ``image``: float tensor (C, H, W) in 0..1; ``mask``: integer tensor (H, W). Uses torch's
    global RNG, so ``torch.manual_seed`` makes it reproducible.
    """

    def __init__(self, cfg: AugmentConfig | None = None) -> None:
        self.cfg = cfg or AugmentConfig()
        c = self.cfg
        self.geometry = v2.Compose(
            [
                v2.RandomHorizontalFlip(c.flip_p),
                v2.RandomVerticalFlip(c.flip_p),
                v2.RandomApply(
                    [
                        v2.RandomAffine(
                            degrees=c.affine_degrees,
                            translate=(c.affine_translate, c.affine_translate),
                            scale=c.affine_scale,
                        )
                    ],
                    p=c.affine_p,
                ),
            ]
        )
        self.colour = v2.ColorJitter(brightness=c.brightness, contrast=c.contrast)

    def __call__(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        c = self.cfg
        img = tv_tensors.Image(image)
        msk = tv_tensors.Mask(mask)
        if c.rot90_p > 0 and image.shape[-1] == image.shape[-2] and torch.rand(()) < c.rot90_p:
            k = int(torch.randint(1, 4, ()).item())
            img = tv_tensors.Image(torch.rot90(img, k, dims=(-2, -1)))
            msk = tv_tensors.Mask(torch.rot90(msk, k, dims=(-2, -1)))
        img, msk = self.geometry(img, msk)
        out = self.colour(img).as_subclass(Tensor)
        if c.gamma_p > 0 and torch.rand(()) < c.gamma_p:
            lo, hi = c.gamma
            g = float(torch.empty(()).uniform_(lo, hi))
            out = out.clamp(0, 1) ** g
        if c.noise_p > 0 and torch.rand(()) < c.noise_p:
            out = out + torch.randn_like(out) * c.noise_sigma
        return out.clamp(0, 1), msk.as_subclass(Tensor)
