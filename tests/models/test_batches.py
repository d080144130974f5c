"""Training batches: canvas fitting, sampling, items."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np

from config.train import load_train_config
from models.batches import ItemSampler, TrainItems, canvas_size, fit_canvas
from models.data import load_dataset
from models.losses import IGNORE
from tests.models.test_data import make_tile_dataset


def test_a_small_image_is_padded_and_its_padding_ignored() -> None:
    """A 20 x 30 image on a 32 x 64 canvas: the image appears whole, the rest of the mask is
    IGNORE, and the padding reflects the image (no black frame)."""
    img = np.arange(600, dtype=np.uint8).reshape(20, 30)
    mask = np.zeros((20, 30), np.uint8)
    mask[5, 5] = 1
    out, m = fit_canvas(img, mask, 32, 64, 0.0, random.Random(1))
    assert out.shape == m.shape == (32, 64)
    assert int((m != IGNORE).sum()) == 600 and int((m == 1).sum()) == 1
    ys, xs = np.nonzero(m != IGNORE)
    assert np.array_equal(out[ys.min():ys.max() + 1, xs.min():xs.max() + 1], img)


def test_a_large_image_is_cropped_towards_its_defect() -> None:
    """With defect_prob 1 every crop of a 200 x 200 image holds its single defect pixel."""
    img = np.zeros((200, 200), np.uint8)
    mask = np.zeros((200, 200), np.uint8)
    mask[150, 20] = 2
    rng = random.Random(0)
    for _ in range(20):
        _, m = fit_canvas(img, mask, 64, 64, 1.0, rng)
        assert m.shape == (64, 64) and int((m == 2).sum()) == 1


def test_balanced_sampling_shows_every_class_equally_often(tmp_path: Path) -> None:
    """Balanced: defect-free images make up free_share; the defect classes share the rest
    evenly, whatever their counts; natural follows the data."""
    data = make_tile_dataset(tmp_path / "tiles", per_class=3)
    ds = load_dataset(data, "folder-classes")
    idx = list(range(len(ds)))
    cfg = load_train_config(None, {"patch.mode": "whole", "patch.per_epoch": 3000,
                                   "patch.free_share": 0.5})
    items = ItemSampler(cfg, ds, idx, 0).epoch_items()
    labels = Counter(ds.samples[i].label or "free" for i, *_ in items)
    assert abs(labels["free"] / 3000 - 0.5) < 0.05
    assert abs(labels["Blowhole"] - labels["Crack"]) < 200
    assert all(y == -1 and x == -1 for _, y, x, _ in items)


def test_items_are_fixed_size_tensors(tmp_path: Path) -> None:
    """Whole mode: the canvas is the largest image rounded up to 32 px; every item has it."""
    data = make_tile_dataset(tmp_path / "tiles", per_class=2)
    ds = load_dataset(data, "folder-classes")
    cfg = load_train_config(None, {"patch.mode": "whole", "augment.enabled": False})
    canvas = canvas_size(cfg, ds, list(range(len(ds))))
    assert canvas[0] % 32 == 0 and canvas[1] % 32 == 0
    x, m = TrainItems(cfg, ds, canvas)[(0, -1, -1, 7)]
    assert tuple(x.shape) == (1, *canvas) and tuple(m.shape) == canvas
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
