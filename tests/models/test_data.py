"""Tests of models.data: the four dataset formats, splits and patch geometry."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from config.errors import DatasetError
from models.data import (
    Window,
    crop,
    grid_windows,
    load_dataset,
    select_windows,
    split_by_ratio,
    split_from_lists,
    window_starts,
    write_split_lists,
)


def antialiased_mask(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """A mask with a 255 core and an anti-aliased rim of 100 (below) and 200 (above 127)."""
    m = np.zeros((h, w), np.uint8)
    m[max(0, y0 - 2) : y1 + 2, max(0, x0 - 2) : x1 + 2] = 100
    m[max(0, y0 - 1) : y1 + 1, max(0, x0 - 1) : x1 + 1] = 200
    m[y0:y1, x0:x1] = 255
    return m


def make_tile_dataset(root: Path, per_class: int = 3, size: tuple[int, int] = (48, 40)) -> Path:
    """A magnetic-tile-like folder-classes dataset: Free, Blowhole, Crack; odd sizes; grey
    images with a bright defect where the anti-aliased mask is set."""
    rng = np.random.default_rng(0)
    h0, w0 = size
    for cls in ("Free", "Blowhole", "Crack"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            h, w = h0 + k * 3, w0 + k * 5  # varying, odd-ish sizes
            img = rng.integers(40, 80, (h, w)).astype(np.uint8)
            mask = np.zeros((h, w), np.uint8)
            if cls != "Free":
                y, x = 8 + k, 10 + k
                mask = antialiased_mask(h, w, y, y + 8, x, x + (4 if cls == "Crack" else 8))
                img[mask > 127] = 230
            cv2.imwrite(str(root / cls / f"exp{k}_num_{cls}{k}.jpg"), img)
            cv2.imwrite(str(root / cls / f"exp{k}_num_{cls}{k}.png"), mask)
    return root


def test_folder_classes_binarises_antialiased_masks(tmp_path: Path) -> None:
    """folder-classes: classes from folder names, Free is defect-free, masks > 127 only."""
    root = make_tile_dataset(tmp_path / "tiles")
    ds = load_dataset(root, "folder-classes")
    assert ds.classes == ["Blowhole", "Crack"]
    assert len(ds) == 9
    by_label = {s.label for s in ds.samples}
    assert by_label == {"", "Blowhole", "Crack"}
    for i, s in enumerate(ds.samples):
        image, mask = ds.load(i)
        assert image.shape == mask.shape
        if s.label == "":
            assert not mask.any()
        else:
            raw = cv2.imread(str(s.mask_path), cv2.IMREAD_GRAYSCALE)
            expected = ds.classes.index(s.label) + 1
            assert set(np.unique(mask)) == {0, expected}
            assert ((mask > 0) == (raw > 127)).all()


def test_folder_format_binary_and_index_masks(tmp_path: Path) -> None:
    """folder: images/ + same-stem masks/; binary anti-aliased masks and class-index masks."""
    root = tmp_path / "bin"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    cv2.imwrite(str(root / "images" / "a.png"), np.full((37, 53), 90, np.uint8))
    cv2.imwrite(str(root / "masks" / "a.png"), antialiased_mask(37, 53, 5, 10, 5, 12))
    ds = load_dataset(root, "folder")
    _, mask = ds.load(0)
    assert ds.classes == ["defect"] and mask.shape == (37, 53)
    assert int(mask.sum()) == (10 - 5 + 2) * (12 - 5 + 2)  # core + 200 rim, not the 100 rim

    root2 = tmp_path / "idx"
    (root2 / "images").mkdir(parents=True)
    (root2 / "masks").mkdir()
    (root2 / "classes.txt").write_text("scratch\ndent\n")
    m = np.zeros((20, 21), np.uint8)
    m[2:5, 2:5], m[10:12, 10:15] = 1, 2
    cv2.imwrite(str(root2 / "images" / "b.jpg"), np.zeros((20, 21), np.uint8))
    cv2.imwrite(str(root2 / "masks" / "b.png"), m)
    ds2 = load_dataset(root2, "folder")
    assert ds2.classes == ["scratch", "dent"]
    assert (ds2.load(0)[1] == m).all()
    assert ds2.samples[0].label == "dent"  # the image label is the class with most pixels


def test_labelme_polygons_and_rectangles(tmp_path: Path) -> None:
    """labelme: polygons and rectangles are rasterised with their class index."""
    cv2.imwrite(str(tmp_path / "p.png"), np.zeros((30, 41), np.uint8))
    doc = {
        "imagePath": "p.png",
        "imageHeight": 30,
        "imageWidth": 41,
        "shapes": [
            {
                "label": "crack",
                "shape_type": "polygon",
                "points": [[2, 2], [10, 2], [10, 10], [2, 10]],
            },
            {"label": "pit", "shape_type": "rectangle", "points": [[20, 20], [25, 25]]},
        ],
    }
    (tmp_path / "p.json").write_text(json.dumps(doc))
    ds = load_dataset(tmp_path, "labelme")
    assert ds.classes == ["crack", "pit"]
    _, mask = ds.load(0)
    assert mask.shape == (30, 41)
    assert mask[5, 5] == 1 and mask[22, 22] == 2 and mask[0, 0] == 0 and mask[15, 15] == 0


def test_coco_polygons_and_rle_refused(tmp_path: Path) -> None:
    """coco: polygon segmentations become class-index masks; RLE gives a DatasetError."""
    cv2.imwrite(str(tmp_path / "c.png"), np.zeros((25, 33), np.uint8))
    cv2.imwrite(str(tmp_path / "d.png"), np.zeros((25, 33), np.uint8))
    doc = {
        "images": [{"id": 1, "file_name": "c.png"}, {"id": 2, "file_name": "d.png"}],
        "categories": [{"id": 7, "name": "blob"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 7,
                "segmentation": [[3, 3, 12, 3, 12, 12, 3, 12]],
            }
        ],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(doc))
    ds = load_dataset(tmp_path, "coco")
    assert ds.classes == ["blob"]
    assert ds.load(0)[1][6, 6] == 1 and not ds.load(1)[1].any()
    assert [s.label for s in ds.samples] == ["blob", ""]
    doc["annotations"][0]["segmentation"] = {"counts": "abc", "size": [25, 33]}
    (tmp_path / "annotations.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="RLE"):
        load_dataset(tmp_path, "coco")


def test_mask_size_mismatch_and_unknown_format(tmp_path: Path) -> None:
    """A mask of another size, or an unknown format, is a DatasetError naming the problem."""
    (tmp_path / "Crack").mkdir()
    cv2.imwrite(str(tmp_path / "Crack" / "a.jpg"), np.zeros((10, 12), np.uint8))
    cv2.imwrite(str(tmp_path / "Crack" / "a.png"), np.zeros((11, 12), np.uint8))
    ds = load_dataset(tmp_path, "folder-classes")
    with pytest.raises(DatasetError, match="differs"):
        ds.load(0)
    with pytest.raises(DatasetError, match="unknown"):
        load_dataset(tmp_path, "voc")


def test_grouped_split_is_seeded_and_keeps_groups_together(tmp_path: Path) -> None:
    """Ratio split: groups from a stem regex never straddle parts; same seed, same split."""
    root = make_tile_dataset(tmp_path / "tiles", per_class=4)
    ds = load_dataset(root, "folder-classes", group_pattern=r"^exp(?P<group>\d+)_")
    a = split_by_ratio(ds, val=0.25, seed=3)
    b = split_by_ratio(ds, val=0.25, seed=3)
    assert a == b
    assert sorted(a.train + a.val) == list(range(len(ds)))
    train_groups = {ds.samples[i].group for i in a.train}
    val_groups = {ds.samples[i].group for i in a.val}
    assert a.val and not train_groups & val_groups
    with pytest.raises(DatasetError):
        split_by_ratio(ds, val=0.7, test=0.5)


def test_split_lists_round_trip(tmp_path: Path) -> None:
    """Split lists written by write_split_lists read back to the same indices."""
    ds = load_dataset(make_tile_dataset(tmp_path / "tiles"), "folder-classes")
    split = split_by_ratio(ds, val=0.34, seed=1)
    write_split_lists(ds, split, tmp_path / "lists")
    back = split_from_lists(ds, {p: tmp_path / "lists" / f"{p}.txt" for p in ("train", "val")})
    assert back.train == split.train and back.val == split.val
    (tmp_path / "bad.txt").write_text("Nope/none\n")
    with pytest.raises(DatasetError, match="matches no image"):
        split_from_lists(ds, {"val": tmp_path / "bad.txt"})


def test_window_geometry_384_with_25_percent_overlap() -> None:
    """384 windows, 25 % overlap: stride 288, last window flush with the end, full cover;
    a length shorter than a patch gives one (padded) window."""
    starts = window_starts(1000, 384, 0.25)
    assert starts == [0, 288, 576, 616]
    assert starts[-1] + 384 == 1000
    assert all(b - a <= 288 for a, b in itertools.pairwise(starts))
    assert window_starts(384, 384, 0.25) == [0]
    assert window_starts(200, 384, 0.25) == [0]
    patch = crop(np.ones((200, 300), np.uint8), 0, 0, 384)
    assert patch.shape == (384, 384) and patch[:200, :300].all() and not patch[200:].any()


def test_grid_windows_and_free_share(tmp_path: Path) -> None:
    """Grid windows mark defect-bearing ones; selection keeps all of those plus the asked
    share of defect-free ones."""
    ds = load_dataset(make_tile_dataset(tmp_path / "tiles"), "folder-classes")
    wins = grid_windows(ds, size=32, overlap=0.25)
    assert any(w.defect for w in wins) and any(not w.defect for w in wins)
    synthetic = [Window(0, 0, 0, True)] * 6 + [Window(1, 0, 0, False)] * 20
    chosen = select_windows(synthetic, 0.25, random.Random(0))
    assert sum(w.defect for w in chosen) == 6 and sum(not w.defect for w in chosen) == 2
