"""Small PNG charts drawn with OpenCV (already a dependency; no matplotlib).

- :func:`line_chart`: one or more (x, y) series on shared axes (loss curves, PR curves);
- :func:`confusion_chart`: a labelled matrix with counts, shaded by row share.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

#: BGR colours of successive series
COLOURS: tuple[tuple[int, int, int], ...] = (
    (180, 90, 20),
    (30, 120, 230),
    (40, 160, 40),
    (40, 40, 200),
    (150, 60, 150),
    (0, 0, 0),
)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _write(path: Path, image: npt.NDArray[np.uint8]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")
    return path


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    path: Path,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: tuple[int, int] = (720, 480),
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
) -> Path:
    """Draw ``series`` (name -> points) as lines with a legend; write a PNG at ``path``."""
    w, h = size
    left, right, top, bottom = 70, 20, 40, 50
    img = np.full((h, w, 3), 255, np.uint8)
    pts_all = [p for s in series.values() for p in s if np.isfinite(p[0]) and np.isfinite(p[1])]
    xs = [p[0] for p in pts_all] or [0.0, 1.0]
    ys = [p[1] for p in pts_all] or [0.0, 1.0]
    x0, x1 = xlim or (min(xs), max(xs))
    y0, y1 = ylim or (min(ys), max(ys))
    if x1 <= x0:
        x1 = x0 + 1.0
    if y1 <= y0:
        y1 = y0 + 1.0

    def to_px(x: float, y: float) -> tuple[int, int]:
        px = left + (x - x0) / (x1 - x0) * (w - left - right)
        py = h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)
        return round(px), round(py)

    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    for k in range(5):
        fx, fy = x0 + (x1 - x0) * k / 4, y0 + (y1 - y0) * k / 4
        px, _ = to_px(fx, y0)
        _, py = to_px(x0, fy)
        cv2.line(img, (px, h - bottom), (px, h - bottom + 5), (0, 0, 0), 1)
        cv2.putText(img, _fmt(fx), (px - 15, h - bottom + 20), FONT, 0.4, (0, 0, 0), 1)
        cv2.line(img, (left - 5, py), (left, py), (0, 0, 0), 1)
        cv2.putText(img, _fmt(fy), (5, py + 4), FONT, 0.4, (0, 0, 0), 1)
    cv2.putText(img, title, (left, 25), FONT, 0.6, (0, 0, 0), 1)
    cv2.putText(img, xlabel, (w // 2 - 30, h - 10), FONT, 0.45, (0, 0, 0), 1)
    cv2.putText(img, ylabel, (5, top - 8), FONT, 0.45, (0, 0, 0), 1)
    for n, (name, pts) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        good = [to_px(x, y) for x, y in pts if np.isfinite(x) and np.isfinite(y)]
        if len(good) > 1:
            cv2.polylines(img, [np.asarray(good, np.int32).reshape(-1, 1, 2)], False, colour, 2)
        for p in good if len(good) <= 60 else []:
            cv2.circle(img, p, 3, colour, -1)
        ly = top + 18 + 18 * n
        cv2.line(img, (w - right - 170, ly - 4), (w - right - 145, ly - 4), colour, 2)
        cv2.putText(img, name[:22], (w - right - 140, ly), FONT, 0.45, (0, 0, 0), 1)
    return _write(path, img)


def confusion_chart(
    matrix: npt.NDArray[np.int64],
    rows: Sequence[str],
    cols: Sequence[str],
    path: Path,
    title: str = "",
) -> Path:
    """Draw a confusion matrix (rows = truth, columns = prediction) with counts."""
    n_r, n_c = matrix.shape
    cell, left, top = 70, 110, 120
    h, w = top + n_r * cell + 20, left + n_c * cell + 20
    img = np.full((h, w, 3), 255, np.uint8)
    cv2.putText(img, title, (10, 22), FONT, 0.55, (0, 0, 0), 1)
    cv2.putText(img, "prediction ->", (left, 45), FONT, 0.45, (0, 0, 0), 1)
    totals = matrix.sum(axis=1, keepdims=True).clip(min=1)
    for j, name in enumerate(cols):
        x = left + j * cell + 5
        cv2.putText(img, name[:9], (x, top - 10), FONT, 0.4, (0, 0, 0), 1)
    for i, name in enumerate(rows):
        y = top + i * cell
        cv2.putText(img, name[:12], (5, y + cell // 2 + 4), FONT, 0.4, (0, 0, 0), 1)
        for j in range(n_c):
            share = float(matrix[i, j] / totals[i, 0])
            shade = int(255 - 200 * share)
            x = left + j * cell
            cv2.rectangle(img, (x, y), (x + cell, y + cell), (255, shade, shade), -1)
            cv2.rectangle(img, (x, y), (x + cell, y + cell), (0, 0, 0), 1)
            colour = (255, 255, 255) if share > 0.6 else (0, 0, 0)
            cv2.putText(
                img, str(int(matrix[i, j])), (x + 8, y + cell // 2 + 5), FONT, 0.45, colour, 1
            )
    return _write(path, img)


def image_sheet(
    tiles: Sequence[tuple[npt.NDArray[np.uint8], str]],
    path: Path,
    title: str = "",
    columns: int = 6,
) -> Path:
    """Thumbnails (BGR, any sizes) on a grid, each with a caption under it; one row of text
    saying so when there are none."""
    cell_w = max([t.shape[1] for t, _ in tiles], default=200)
    cell_h = max([t.shape[0] for t, _ in tiles], default=0) + 34
    cols = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // cols)
    img = np.full((40 + rows * cell_h + 10, 10 + cols * (cell_w + 10), 3), 255, np.uint8)
    cv2.putText(img, title or ("none" if not tiles else ""), (10, 26), FONT, 0.6, (0, 0, 0), 1)
    for k, (thumb, caption) in enumerate(tiles):
        x, y = 10 + (k % cols) * (cell_w + 10), 40 + (k // cols) * cell_h
        h, w = thumb.shape[:2]
        img[y:y + h, x:x + w] = thumb
        for j, line in enumerate(caption.split("\n")[:2]):
            cv2.putText(img, line[:40], (x, y + h + 13 + 13 * j), FONT, 0.38, (0, 0, 0), 1)
    return _write(path, img)
