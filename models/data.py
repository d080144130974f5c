"""Segmentation datasets: four on-disk formats, grouped seeded splits, patch sampling.

Formats (``load_samples(root, fmt)``):

- ``folder``: ``root/images/<stem>.<ext>`` with same-stem masks in ``root/masks/<stem>.png``.
  A mask is binary (anti-aliased 0..255, binarised ``> 127``) or a class-index image
  (values 0..K). ``root/classes.txt`` (one defect class per line) names the classes.
- ``folder-classes``: one folder per class, as the magnetic-tile data: ``root/<Class>/<stem>.jpg``
  with the mask ``root/<Class>/<stem>.png``. The folder names the class of every defect pixel;
  ``Free`` or ``OK`` means defect-free (its mask, if any, is ignored). Masks are binarised > 127.
- ``labelme``: ``root/**/*.json`` LabelMe files (polygon / rectangle shapes; ``label`` is the
  class), the image next to the JSON (``imagePath``).
- ``coco``: ``root/annotations.json`` (or the only ``*.json`` in root) in COCO format with
  polygon segmentation (RLE is refused with a DatasetError); images relative to root or
  ``root/images``.

Every sample carries a *group* key (the part / sample it belongs to) so that a split never puts
two images of one part on both sides. ``group_pattern`` (a regex with a ``group`` named group or
a first capture group, matched against the file stem) sets it; without one, every image is its
own group.

Masks are class-index images: 0 = background, ``i`` = ``classes[i - 1]``.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from config.errors import DatasetError

U8 = npt.NDArray[np.uint8]
Format = Literal["folder", "folder-classes", "labelme", "coco"]
FORMATS: tuple[str, ...] = ("folder", "folder-classes", "labelme", "coco")
FREE_NAMES: frozenset[str] = frozenset({"free", "ok"})
IMAGE_EXTS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
#: a binary / anti-aliased mask pixel counts as foreground above this value
MASK_THRESHOLD = 127

Polygon = tuple[int, tuple[tuple[float, float], ...]]  # (class index, points x, y)


@dataclass(frozen=True)
class Sample:
    """One annotated image. The mask comes from ``mask_path`` or from ``polygons``.

    ``mask_mode``: ``binary`` -> foreground ``> 127`` gets ``fill_index``; ``index`` -> the
    mask's values are class indices; ``none`` -> all background (defect-free).
    ``label``: the image-level class (``""`` for defect-free).
    """

    image: Path
    group: str
    label: str
    mask_path: Path | None = None
    mask_mode: Literal["binary", "index", "none", "polygons"] = "none"
    fill_index: int = 1
    polygons: tuple[Polygon, ...] = ()

    @property
    def name(self) -> str:
        """A stable, unique-enough name: ``<label or free>/<stem>``."""
        return f"{self.label or 'free'}/{self.image.stem}"


@dataclass
class Dataset:
    """Samples plus the class list (defect classes only; index 0 is background)."""

    samples: list[Sample]
    classes: list[str]
    root: Path | None = None
    _cache: dict[int, tuple[U8, U8]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int, cache: bool = True) -> tuple[U8, U8]:
        """Image (H, W) uint8 grey and mask (H, W) uint8 class index of sample ``i``."""
        if cache and i in self._cache:
            return self._cache[i]
        sample = self.samples[i]
        image = read_gray(sample.image)
        mask = load_mask(sample, image.shape[0], image.shape[1], len(self.classes))
        if cache:
            self._cache[i] = (image, mask)
        return image, mask

    def subset(self, indices: Iterable[int]) -> Dataset:
        """A dataset with the chosen samples (same classes)."""
        return Dataset([self.samples[i] for i in indices], list(self.classes), self.root)


def read_gray(path: Path) -> U8:
    """Read an image as 8-bit grey; colour images are converted."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DatasetError(f"image {path}: unreadable (missing, not an image, or corrupt)")
    return np.ascontiguousarray(image, dtype=np.uint8)


def load_mask(sample: Sample, height: int, width: int, n_classes: int) -> U8:
    """The class-index mask of ``sample``, checked against the image size."""
    if sample.mask_mode == "none":
        return np.zeros((height, width), np.uint8)
    if sample.mask_mode == "polygons":
        mask = np.zeros((height, width), np.uint8)
        for index, points in sample.polygons:
            pts = np.round(np.asarray(points, np.float64)).astype(np.int32).reshape(-1, 1, 2)
            cv2.fillPoly(mask, [pts], int(index))
        return mask
    assert sample.mask_path is not None
    raw = cv2.imread(str(sample.mask_path), cv2.IMREAD_GRAYSCALE)
    if raw is None:
        raise DatasetError(f"mask {sample.mask_path}: unreadable")
    if raw.shape != (height, width):
        raise DatasetError(
            f"mask {sample.mask_path}: size {raw.shape[1]}x{raw.shape[0]} differs from its "
            f"image {width}x{height}"
        )
    if sample.mask_mode == "binary":
        return np.where(raw > MASK_THRESHOLD, sample.fill_index, 0).astype(np.uint8)
    if int(raw.max()) > n_classes:
        raise DatasetError(
            f"mask {sample.mask_path}: class index {int(raw.max())} > number of classes "
            f"{n_classes}; use binary masks or list the classes in classes.txt"
        )
    return raw.astype(np.uint8)


def group_of(stem: str, pattern: str | None) -> str:
    """The group (part / sample) key of a file stem; the stem itself without a pattern."""
    if not pattern:
        return stem
    match = re.search(pattern, stem)
    if match is None:
        return stem
    if "group" in match.groupdict():
        return str(match.group("group"))
    return str(match.group(1) if match.groups() else match.group(0))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def load_folder(root: Path, group_pattern: str | None = None) -> Dataset:
    """Format (a): ``root/images`` + same-stem masks in ``root/masks``."""
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise DatasetError(f"dataset {root}: format 'folder' needs images/ and masks/ in it")
    classes_file = root / "classes.txt"
    classes = (
        [c.strip() for c in classes_file.read_text().splitlines() if c.strip()]
        if classes_file.is_file()
        else ["defect"]
    )
    masks = {p.stem: p for p in _images_in(masks_dir)}
    samples: list[Sample] = []
    for image in _images_in(images_dir):
        mask = masks.get(image.stem)
        if mask is None:
            raise DatasetError(f"image {image}: no mask {masks_dir}/{image.stem}.png")
        mode: Literal["binary", "index"] = "index" if len(classes) > 1 else "binary"
        if mode == "binary":
            raw = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
            if raw is not None and 0 < int(raw.max()) <= 1:
                mode = "index"  # a 0/1 mask is a class-index mask of one class
        samples.append(Sample(image, group_of(image.stem, group_pattern), "", mask, mode, 1))
    if not samples:
        raise DatasetError(f"dataset {root}: no images in {images_dir}")
    return _with_labels(Dataset(samples, classes, root))


def _with_labels(ds: Dataset) -> Dataset:
    """Fill each sample's image-level label from its mask (largest defect class present)."""
    out: list[Sample] = []
    for i, s in enumerate(ds.samples):
        if s.label:
            out.append(s)
            continue
        _, mask = ds.load(i, cache=False)
        counts = np.bincount(mask.ravel(), minlength=len(ds.classes) + 1)[1:]
        label = ds.classes[int(np.argmax(counts))] if counts.sum() > 0 else ""
        out.append(
            Sample(s.image, s.group, label, s.mask_path, s.mask_mode, s.fill_index, s.polygons)
        )
    return Dataset(out, ds.classes, ds.root)


def load_folder_classes(root: Path, group_pattern: str | None = None) -> Dataset:
    """Format (b): one folder per class; ``Free`` / ``OK`` = defect-free."""
    if not root.is_dir():
        raise DatasetError(f"dataset {root}: not a directory")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = [f.name for f in folders if f.name.lower() not in FREE_NAMES]
    samples: list[Sample] = []
    for folder in folders:
        free = folder.name.lower() in FREE_NAMES
        index = 0 if free else classes.index(folder.name) + 1
        files = _images_in(folder)
        stems_with_jpg = {p.stem for p in files if p.suffix.lower() != ".png"}
        for image in files:
            # a .png next to a same-stem .jpg is that image's mask, not an image
            if image.suffix.lower() == ".png" and image.stem in stems_with_jpg:
                continue
            mask = image.with_suffix(".png") if image.suffix.lower() != ".png" else None
            has_mask = mask is not None and mask.is_file()
            if not free and not has_mask:
                raise DatasetError(f"image {image}: class {folder.name} but no mask {mask}")
            samples.append(
                Sample(
                    image,
                    group_of(image.stem, group_pattern),
                    "" if free else folder.name,
                    mask if (has_mask and not free) else None,
                    "binary" if (has_mask and not free) else "none",
                    index,
                )
            )
    if not samples:
        raise DatasetError(f"dataset {root}: no class folders with images")
    return Dataset(samples, classes, root)


def _shape_polygon(shape: dict[str, object]) -> tuple[tuple[float, float], ...]:
    points = shape.get("points")
    if not isinstance(points, list) or not points:
        raise DatasetError(f"labelme shape {shape.get('label')!r}: no points")
    pts = tuple((float(p[0]), float(p[1])) for p in points)
    if shape.get("shape_type") == "rectangle" and len(pts) == 2:
        (x0, y0), (x1, y1) = pts
        pts = ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
    return pts


def load_labelme(root: Path, group_pattern: str | None = None) -> Dataset:
    """Format (c): LabelMe JSON files (polygons and rectangles), image next to each JSON."""
    files = sorted(root.rglob("*.json"))
    if not files:
        raise DatasetError(f"dataset {root}: no LabelMe *.json files")
    docs: list[tuple[Path, dict[str, object]]] = []
    names: set[str] = set()
    for f in files:
        try:
            doc = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"labelme file {f}: {exc}") from exc
        if not isinstance(doc, dict) or "shapes" not in doc or "imagePath" not in doc:
            raise DatasetError(f"labelme file {f}: needs 'shapes' and 'imagePath'")
        docs.append((f, doc))
        for shape in doc["shapes"]:
            names.add(str(shape["label"]))
    classes = sorted(n for n in names if n.lower() not in FREE_NAMES)
    samples: list[Sample] = []
    for f, doc in docs:
        image = (f.parent / str(doc["imagePath"])).resolve()
        polys: list[Polygon] = []
        for shape in doc["shapes"]:  # type: ignore[attr-defined]
            label = str(shape["label"])
            if label.lower() in FREE_NAMES:
                continue
            polys.append((classes.index(label) + 1, _shape_polygon(shape)))
        label = _dominant([classes[p[0] - 1] for p in polys])
        samples.append(
            Sample(
                image, group_of(image.stem, group_pattern), label, None, "polygons", 1, tuple(polys)
            )
        )
    return Dataset(samples, classes, root)


def _dominant(labels: Sequence[str]) -> str:
    if not labels:
        return ""
    counts: dict[str, int] = defaultdict(int)
    for label in labels:
        counts[label] += 1
    return max(sorted(counts), key=lambda k: counts[k])


def load_coco(root: Path, group_pattern: str | None = None) -> Dataset:
    """Format (d): COCO instance JSON with polygon segmentations."""
    path = root / "annotations.json"
    if not path.is_file():
        candidates = sorted(root.glob("*.json"))
        if len(candidates) != 1:
            raise DatasetError(
                f"dataset {root}: format 'coco' needs annotations.json (or exactly one *.json)"
            )
        path = candidates[0]
    try:
        doc = json.loads(path.read_text())
        cats = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
        images = {int(im["id"]): str(im["file_name"]) for im in doc["images"]}
        anns = doc.get("annotations", [])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DatasetError(f"coco file {path}: {exc}") from exc
    classes = [cats[k] for k in sorted(cats) if cats[k].lower() not in FREE_NAMES]
    polys: dict[int, list[Polygon]] = defaultdict(list)
    for ann in anns:
        seg = ann.get("segmentation")
        name = cats.get(int(ann["category_id"]), "")
        if name.lower() in FREE_NAMES:
            continue
        if not isinstance(seg, list):
            raise DatasetError(
                f"coco file {path}: annotation {ann.get('id')} uses RLE; "
                "only polygon segmentations are supported"
            )
        for flat in seg:
            pts = tuple((float(flat[j]), float(flat[j + 1])) for j in range(0, len(flat) - 1, 2))
            polys[int(ann["image_id"])].append((classes.index(name) + 1, pts))
    samples: list[Sample] = []
    for image_id, file_name in sorted(images.items()):
        image = root / file_name
        if not image.is_file() and (root / "images" / file_name).is_file():
            image = root / "images" / file_name
        ps = tuple(polys.get(image_id, []))
        label = _dominant([classes[p[0] - 1] for p in ps])
        samples.append(
            Sample(image, group_of(image.stem, group_pattern), label, None, "polygons", 1, ps)
        )
    return Dataset(samples, classes, root)


def load_dataset(
    root: Path | str, fmt: str = "folder-classes", group_pattern: str | None = None
) -> Dataset:
    """Load a dataset in one of :data:`FORMATS`."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset {root}: does not exist")
    loaders = {
        "folder": load_folder,
        "folder-classes": load_folder_classes,
        "labelme": load_labelme,
        "coco": load_coco,
    }
    if fmt not in loaders:
        raise DatasetError(f"dataset format {fmt!r}: unknown; valid: {', '.join(FORMATS)}")
    return loaders[fmt](root, group_pattern)


# ---------------------------------------------------------------- splits


@dataclass(frozen=True)
class Split:
    """Indices into a dataset for each part of a split."""

    train: list[int]
    val: list[int]
    test: list[int]


def split_by_ratio(ds: Dataset, val: float = 0.2, test: float = 0.0, seed: int = 0) -> Split:
    """Grouped, class-stratified, seeded split: all images of one group land on one side.

    Groups are stratified by their dominant image label so that rare classes appear in each
    part; within a label the groups are shuffled with ``seed`` and cut by ratio (rounded; a
    label with at least two groups gives each asked-for part at least one).
    """
    if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
        raise DatasetError(f"split ratios val={val}, test={test}: need 0 <= each, sum < 1")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(ds.samples):
        groups[s.group].append(i)
    by_label: dict[str, list[str]] = defaultdict(list)
    for g, members in sorted(groups.items()):
        by_label[_dominant([ds.samples[i].label for i in members])].append(g)
    rng = random.Random(seed)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for label in sorted(by_label):
        gs = by_label[label]
        rng.shuffle(gs)
        n_val, n_test = round(len(gs) * val), round(len(gs) * test)
        if val > 0 and n_val == 0 and len(gs) - n_test >= 2:
            n_val = 1  # keep a rare class in validation
        if test > 0 and n_test == 0 and len(gs) - n_val >= 2:
            n_test = 1
        for k, g in enumerate(gs):
            part = "val" if k < n_val else "test" if k < n_val + n_test else "train"
            parts[part].extend(groups[g])
    return Split(sorted(parts["train"]), sorted(parts["val"]), sorted(parts["test"]))


def split_from_lists(ds: Dataset, lists: dict[str, Path]) -> Split:
    """Split from list files (``train``/``val``/``test`` -> file): one entry a line, matched
    against the image stem, ``Class/stem`` or a path relative to the dataset root."""
    keys: dict[str, int] = {}
    for i, s in enumerate(ds.samples):
        keys[s.image.stem] = i
        keys[f"{s.image.parent.name}/{s.image.stem}"] = i
        if ds.root is not None:
            with contextlib.suppress(ValueError):
                keys[str(s.image.relative_to(ds.root))] = i
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for part, path in lists.items():
        if part not in parts:
            raise DatasetError(f"split list {part!r}: use train, val or test")
        for line in Path(path).read_text().splitlines():
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            entry_stem = str(Path(entry).with_suffix("")) if "." in Path(entry).name else entry
            index = keys.get(entry, keys.get(entry_stem, keys.get(Path(entry_stem).name)))
            if index is None:
                raise DatasetError(f"split list {path}: {entry!r} matches no image")
            parts[part].append(index)
    return Split(sorted(parts["train"]), sorted(parts["val"]), sorted(parts["test"]))


def write_split_lists(ds: Dataset, split: Split, out: Path) -> None:
    """Write ``train.txt`` / ``val.txt`` / ``test.txt`` (``Class/stem`` per line)."""
    out.mkdir(parents=True, exist_ok=True)
    for part in ("train", "val", "test"):
        indices: list[int] = getattr(split, part)
        lines = [f"{ds.samples[i].image.parent.name}/{ds.samples[i].image.stem}" for i in indices]
        (out / f"{part}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))


# ---------------------------------------------------------------- patches


def window_starts(length: int, size: int, overlap: float) -> list[int]:
    """Start offsets of windows of ``size`` along ``length`` with ``overlap`` (0..<1).

    The stride is ``round(size * (1 - overlap))``; the last window is aligned to the end so the
    whole length is covered. A length shorter than ``size`` gives one window at 0 (padded).
    """
    if size <= 0 or not 0 <= overlap < 1:
        raise DatasetError(f"patch size {size} / overlap {overlap}: need size > 0, 0 <= o < 1")
    if length <= size:
        return [0]
    stride = max(1, round(size * (1 - overlap)))
    n = math.ceil((length - size) / stride) + 1
    starts = [min(k * stride, length - size) for k in range(n)]
    return sorted(set(starts))


def pad_to(image: U8, height: int, width: int, value: int = 0) -> U8:
    """Pad ``image`` at the bottom / right to at least ``height`` x ``width``."""
    h, w = image.shape[:2]
    if h >= height and w >= width:
        return image
    return np.pad(
        image,
        ((0, max(0, height - h)), (0, max(0, width - w))),
        mode="constant",
        constant_values=value,
    )


def pad_reflect_to(image: U8, height: int, width: int) -> U8:
    """Pad ``image`` at the bottom / right by reflection (for inference on whole images)."""
    h, w = image.shape[:2]
    if h >= height and w >= width:
        return image
    out = cv2.copyMakeBorder(
        image, 0, max(0, height - h), 0, max(0, width - w), cv2.BORDER_REFLECT_101
    )
    return np.ascontiguousarray(out, dtype=np.uint8)


@dataclass(frozen=True)
class Window:
    """A patch: sample index and top-left corner; ``defect`` if its mask has foreground."""

    index: int
    y: int
    x: int
    defect: bool


def grid_windows(ds: Dataset, size: int = 384, overlap: float = 0.25) -> list[Window]:
    """Every window of every image (the paper's 384 x 384, 25 % overlap tiling)."""
    out: list[Window] = []
    for i in range(len(ds)):
        _, mask = ds.load(i)
        h, w = mask.shape
        for y in window_starts(h, size, overlap):
            for x in window_starts(w, size, overlap):
                out.append(Window(i, y, x, bool(mask[y : y + size, x : x + size].any())))
    return out


def select_windows(
    windows: Sequence[Window], free_share: float, rng: random.Random
) -> list[Window]:
    """All defect-bearing windows plus defect-free ones making up ``free_share`` of the result.

    ``free_share`` in [0, 1): e.g. 0.25 -> one defect-free window for three defect windows
    (as many as exist). With no defect windows at all, every window is kept.
    """
    if not 0 <= free_share < 1:
        raise DatasetError(f"free_share {free_share}: need 0 <= share < 1")
    defect = [w for w in windows if w.defect]
    free = [w for w in windows if not w.defect]
    if not defect:
        return list(windows)
    n_free = min(len(free), round(len(defect) * free_share / (1 - free_share)))
    return defect + rng.sample(free, n_free)


def crop(image: U8, y: int, x: int, size: int, value: int = 0) -> U8:
    """The ``size`` x ``size`` window at (y, x), zero-padded where it leaves the image."""
    patch = image[y : y + size, x : x + size]
    return pad_to(patch, size, size, value)


def random_window(mask: U8, size: int, defect_prob: float, rng: random.Random) -> tuple[int, int]:
    """A random crop corner; with ``defect_prob`` the crop contains a random defect pixel."""
    h, w = mask.shape
    max_y, max_x = max(0, h - size), max(0, w - size)
    if rng.random() < defect_prob:
        ys, xs = np.nonzero(mask)
        if len(ys):
            k = rng.randrange(len(ys))
            cy, cx = int(ys[k]), int(xs[k])
            y = min(max_y, max(0, cy - rng.randrange(size)))
            x = min(max_x, max(0, cx - rng.randrange(size)))
            return y, x
    return rng.randint(0, max_y), rng.randint(0, max_x)
