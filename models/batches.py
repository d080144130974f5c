"""Training batches: which images an epoch shows, and how each becomes a fixed-size item.

:class:`ItemSampler` draws an epoch's items in the main process (``natural`` or ``balanced``
over the classes, or the paper's grid windows); :class:`TrainItems` turns an item into pixels
on the run's canvas (:func:`fit_canvas`: cropped towards defects when too large, reflect-padded
at a random offset when too small, the padding marked :data:`models.losses.IGNORE` in the
mask) and augments it; :func:`make_loader` wraps both in a ``DataLoader`` (workers and pinned
memory on CUDA).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data import Dataset as TorchDataset

from config.train import TrainConfig
from models.augment import AugmentConfig, Augmenter
from models.build import SIZE_DIVISOR
from models.data import Dataset, crop, grid_windows, select_windows
from models.losses import IGNORE

U8 = npt.NDArray[np.uint8]


def fit_canvas(
    image: U8, mask: U8, height: int, width: int, defect_prob: float, rng: random.Random
) -> tuple[U8, U8]:
    """``image`` and ``mask`` on a ``height`` x ``width`` canvas.

    A side longer than the canvas is cropped (towards a defect pixel with probability
    ``defect_prob``); a shorter one is reflect-padded at a random offset, its mask padding set
    to :data:`IGNORE`.
    """
    h, w = image.shape
    y0 = x0 = 0
    if h > height or w > width:
        ys, xs = np.nonzero(mask) if rng.random() < defect_prob else ((), ())
        if len(ys):
            k = rng.randrange(len(ys))
            cy, cx = int(ys[k]), int(xs[k])
        else:
            cy, cx = rng.randrange(h), rng.randrange(w)
        if h > height:
            y0 = min(max(0, cy - rng.randrange(height)), h - height)
        if w > width:
            x0 = min(max(0, cx - rng.randrange(width)), w - width)
    image = image[y0:y0 + min(h, height), x0:x0 + min(w, width)]
    mask = mask[y0:y0 + min(h, height), x0:x0 + min(w, width)]
    h, w = image.shape
    if (h, w) == (height, width):
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)
    top, left = rng.randint(0, height - h), rng.randint(0, width - w)
    pad = ((top, height - h - top), (left, width - w - left))
    img = np.pad(image, pad, mode="symmetric" if min(h, w) < 2 else "reflect")
    msk = np.pad(mask, pad, mode="constant", constant_values=IGNORE)
    return img, msk


def canvas_size(cfg: TrainConfig, ds: Dataset, indices: Sequence[int]) -> tuple[int, int]:
    """(height, width) of the training batches."""
    if cfg.patch.mode != "whole":
        return cfg.patch.size, cfg.patch.size
    hmax = wmax = SIZE_DIVISOR
    for i in indices:
        image, _ = ds.load(i)
        hmax, wmax = max(hmax, image.shape[0]), max(wmax, image.shape[1])
    def up(v: int) -> int:
        return min(cfg.patch.whole_max, -(-v // SIZE_DIVISOR) * SIZE_DIVISOR)

    return up(hmax), up(wmax)


Item = tuple[int, int, int, int]  # (sample, y, x, seed); y = x = -1: place at random


class ItemSampler(Sampler[Item]):
    """The items of each epoch, drawn in the main process (so resume and seeds are exact)."""

    def __init__(self, cfg: TrainConfig, ds: Dataset, indices: list[int], seed: int) -> None:
        self.cfg, self.ds, self.indices = cfg, ds, list(indices)
        self.rng = random.Random(seed)
        self.by_label: dict[str, list[int]] = {}
        for i in self.indices:
            self.by_label.setdefault(ds.samples[i].label, []).append(i)
        self.windows = (
            [w for w in grid_windows(ds, cfg.patch.size, cfg.patch.overlap)
             if w.index in set(indices)]
            if cfg.patch.mode == "grid" else []
        )

    def _draw(self) -> int:
        p = self.cfg.patch
        classes = [c for c in self.by_label if c]
        if p.sampler == "natural" or not classes:
            return self.rng.choice(self.indices)
        if "" in self.by_label and self.rng.random() < p.free_share:
            return self.rng.choice(self.by_label[""])
        return self.rng.choice(self.by_label[self.rng.choice(sorted(classes))])

    def epoch_items(self) -> list[Item]:
        """One epoch's items, shuffled."""
        if self.cfg.patch.mode == "grid":
            chosen = select_windows(self.windows, self.cfg.patch.free_share, self.rng)
            items = [(w.index, w.y, w.x, self.rng.getrandbits(31)) for w in chosen]
        else:
            items = [(self._draw(), -1, -1, self.rng.getrandbits(31))
                     for _ in range(self.cfg.patch.per_epoch)]
        self.rng.shuffle(items)
        return items

    def __iter__(self) -> Iterator[Item]:
        return iter(self.epoch_items())

    def __len__(self) -> int:
        if self.cfg.patch.mode == "grid":
            return max(1, len(self.windows))
        return self.cfg.patch.per_epoch


class TrainItems(TorchDataset[tuple[torch.Tensor, torch.Tensor]]):
    """``item -> (pixels (1, H, W) float in [0, 1], mask (H, W) int64, IGNORE = padding)``."""

    def __init__(self, cfg: TrainConfig, ds: Dataset, canvas: tuple[int, int]) -> None:
        self.cfg, self.ds, self.canvas = cfg, ds, canvas
        a = cfg.augment
        self.augment = (
            Augmenter(AugmentConfig(
                flip_p=a.flip_p, rot90_p=a.rot90_p, affine_p=a.affine_p,
                affine_degrees=a.affine_degrees, brightness=a.brightness, contrast=a.contrast,
                gamma_p=a.gamma_p, noise_p=a.noise_p, noise_sigma=a.noise_sigma,
            ))
            if a.enabled else None
        )

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, item: Item) -> tuple[torch.Tensor, torch.Tensor]:
        i, y, x, seed = item
        image, mask = self.ds.load(i)
        h, w = self.canvas
        if y >= 0:
            img, msk = crop(image, y, x, h), crop(mask, y, x, h)
        else:
            img, msk = fit_canvas(image, mask, h, w, self.cfg.patch.defect_prob,
                                  random.Random(seed))
        t_img = torch.from_numpy(img).float().div_(255.0).unsqueeze(0)
        t_msk = torch.from_numpy(msk.astype(np.int64))
        if self.augment is not None:
            gen_state = torch.random.get_rng_state()
            torch.manual_seed(seed)
            t_img, t_msk = self.augment(t_img, t_msk)
            torch.random.set_rng_state(gen_state)
        return t_img.contiguous(), t_msk.contiguous()


def make_loader(
    cfg: TrainConfig, items: TrainItems, sampler: Sampler[Item], device: torch.device
) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of the run: workers and pinned memory on CUDA."""
    workers = cfg.workers
    if workers is None:
        workers = min(8, max(0, (os.cpu_count() or 1) - 1)) if device.type == "cuda" else 0
    return DataLoader(
        items, batch_size=cfg.batch_size, sampler=sampler, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None, drop_last=False,
    )
