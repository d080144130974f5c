"""Overlays for people: the image with every defect outlined and labelled by class."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from pipeline.types import CameraResult, InputImage, Verdict

#: BGR colours per class index (cycled); index 0 (background) is never drawn.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (0, 0, 255), (0, 200, 255), (255, 0, 255), (255, 128, 0), (0, 255, 0),
    (255, 255, 0), (128, 0, 255), (0, 128, 255),
)
#: OpenCV conversion codes for GenICam Bayer names (OpenCV names the pattern one pixel later).
_CV_BAYER = {
    "BayerRG": cv2.COLOR_BayerBG2BGR,
    "BayerGR": cv2.COLOR_BayerGB2BGR,
    "BayerGB": cv2.COLOR_BayerGR2BGR,
    "BayerBG": cv2.COLOR_BayerRG2BGR,
}


#: BGR of the image head's box (the head names a class; its box is cells, not a region)
HEAD_COLOUR = (255, 255, 255)


def colour(class_index: int) -> tuple[int, int, int]:
    """The BGR colour of a class index."""
    if class_index <= 0:
        return PALETTE[0]
    return PALETTE[1 + (class_index - 1) % (len(PALETTE) - 1)]


def to_display(image: InputImage) -> npt.NDArray[np.uint8]:
    """The raw pixels as an 8-bit BGR picture (Bayer demosaiced, deep formats shifted)."""
    from pipeline.preprocess import bayer_pattern  # here: colour() must not import torch

    px = image.pixels
    if px.dtype == np.uint16:
        px8 = (px >> max(image.bits - 8, 0)).clip(0, 255).astype(np.uint8)
    else:
        px8 = np.asarray(px, dtype=np.uint8)
    pattern = bayer_pattern(image.pixel_format)
    if pattern is not None:
        return np.asarray(cv2.cvtColor(px8, _CV_BAYER[pattern]), dtype=np.uint8)
    if px8.ndim == 2:
        return np.asarray(cv2.cvtColor(px8, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    rgb = px8[..., :3]
    if image.pixel_format == "BGR8":
        return np.ascontiguousarray(rgb)
    return np.ascontiguousarray(rgb[..., ::-1])


#: Pictures whose short side is below this are enlarged (by a whole factor, pixels kept sharp)
#: so that outlines and labels stay legible on small frames.
MIN_SIDE_PX = 512

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(
    sizes: list[tuple[int, int]], boxes: list[Rect], width: int, height: int, gap: int = 2
) -> list[Rect | None]:
    """Where each label goes, in order: a rectangle that overlaps no label placed before it.

    ``sizes[i]`` is label i's (width, height), ``boxes[i]`` its defect's box. Candidates are
    tried in turn (above the box, below it, right of it, left of it, inside its top left),
    first one that also covers no other defect's box, then one that may; a label that fits
    nowhere gets ``None`` (it is left out rather than printed over another).
    """
    placed: list[Rect] = []
    out: list[Rect | None] = []
    for (lw, lh), (x0, y0, x1, y1) in zip(sizes, boxes, strict=True):
        candidates = [
            (x0, y0 - lh - gap), (x0, y1 + gap), (x1 + gap, y0), (x0 - lw - gap, y0),
            (x0 + gap, y0 + gap),
        ]
        rects = [
            (x, y, x + lw, y + lh) for x, y in candidates
            if x >= 0 and y >= 0 and x + lw <= width and y + lh <= height
        ]
        free = [r for r in rects if not any(_overlaps(r, p) for p in placed)]
        others = [b for b in boxes if b != (x0, y0, x1, y1)]
        clear = [r for r in free if not any(_overlaps(r, b) for b in others)]
        choice: Rect | None = (clear or free)[0] if (clear or free) else None
        if choice is not None:
            placed.append(choice)
        out.append(choice)
    return out


def _halo_box(canvas: npt.NDArray[np.uint8], box: tuple[int, ...],
              bgr: tuple[int, int, int], line: int) -> None:
    """A rectangle (x, y, width, height) in ``bgr`` over a dark halo, ``line`` px wide."""
    x, y, bw, bh = box
    cv2.rectangle(canvas, (x, y), (x + bw - 1, y + bh - 1), (0, 0, 0), line + 2)
    cv2.rectangle(canvas, (x, y), (x + bw - 1, y + bh - 1), bgr, line)


def draw_overlay(
    image: InputImage,
    result: CameraResult,
    verdict: Verdict | None = None,
    fill_alpha: float = 0.25,
    max_labels: int = 25,
) -> npt.NDArray[np.uint8]:
    """BGR picture: defect map tinted, each defect outlined, the largest labelled.

    Legible at any frame size: a frame whose short side is under ``MIN_SIDE_PX`` is enlarged
    by a whole factor ``k`` (nearest neighbour); outlines are drawn in the class colour over a
    dark halo, both thicker on larger pictures; the ``max_labels`` largest defects get a
    ``Class score`` label on a dark plate, placed by :func:`place_labels` so that no two
    labels overlap (one that fits nowhere is left out and counted in the banner). ``verdict``
    adds a banner in a band *above* the picture, so it never covers a defect.

    The result is ``(band + k * height, k * width, 3)``; ``band`` is 0 without a verdict.
    """
    canvas = to_display(image).copy()
    h0, w0 = canvas.shape[:2]
    k = max(1, -(-MIN_SIDE_PX // max(1, min(h0, w0))))  # ceil
    if k > 1:
        canvas = np.asarray(
            cv2.resize(canvas, (w0 * k, h0 * k), interpolation=cv2.INTER_NEAREST), np.uint8
        )
    h, w = canvas.shape[:2]
    if fill_alpha > 0 and result.defect_map.size and result.defect_map.any():
        dmap = cv2.resize(result.defect_map, (w, h), interpolation=cv2.INTER_NEAREST)
        tint = np.zeros_like(canvas)
        for idx in np.unique(dmap):
            if idx:
                tint[dmap == idx] = colour(int(idx))
        mask = dmap > 0
        blended = cv2.addWeighted(canvas, 1 - fill_alpha, tint, fill_alpha, 0)
        canvas[mask] = blended[mask]
    short = min(h, w)
    line = max(2, round(short / 350))  # outline width [px]: 2 at 512 px, 10 at 3648 px
    scale = max(0.5, short / 1100)  # label font scale: ~11 px high at 512 px
    text_thick = max(1, round(scale * 1.6))
    font = cv2.FONT_HERSHEY_SIMPLEX
    for d in result.defects:
        c = colour(d.class_index)
        if len(d.outline) >= 2:
            pts = (np.asarray(d.outline, dtype=np.int32) * k).reshape(-1, 1, 2)
            cv2.polylines(canvas, [pts], True, (0, 0, 0), line + 2, cv2.LINE_AA)
            cv2.polylines(canvas, [pts], True, c, line, cv2.LINE_AA)
        else:
            _halo_box(canvas, tuple(v * k for v in d.box), c, line)
    largest = sorted(result.defects, key=lambda d: -d.area_px)[:max_labels]
    # (label, box in picture pixels, colour): the largest defects, then the image head's box
    marks = [(f"{d.class_name} {d.max_score:.2f}",
              (d.box[0] * k, d.box[1] * k, (d.box[0] + d.box[2]) * k,
               (d.box[1] + d.box[3]) * k), colour(d.class_index)) for d in largest]
    if result.part_box is not None:  # the image head failed this camera: where it looked
        x, y, bw, bh = (v * k for v in result.part_box)
        _halo_box(canvas, (x, y, bw, bh), HEAD_COLOUR, line)
        score = f" {result.part_score:.2f}" if result.part_score is not None else ""
        marks.append((f"{result.part_class or 'defect'} (head){score}",
                      (x, y, x + bw, y + bh), HEAD_COLOUR))
    pad = max(2, line)
    sizes = []
    for text, _, _ in marks:
        (tw, th), base = cv2.getTextSize(text, font, scale, text_thick)
        sizes.append((tw + 2 * pad, th + base + 2 * pad))
    spots = place_labels(sizes, [b for _, b, _ in marks], w, h)
    for (text, _, c), spot in zip(marks, spots, strict=True):
        if spot is None:
            continue
        x0, y0, x1, y1 = spot
        plate = canvas[y0:y1, x0:x1]
        plate[:] = (plate * 0.3).astype(np.uint8)  # darkened, the picture still shows through
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), c, 1)
        base_y = y1 - pad - cv2.getTextSize(text, font, scale, text_thick)[1]
        cv2.putText(canvas, text, (x0 + pad, base_y), font, scale, c, text_thick, cv2.LINE_AA)
    if verdict is None:
        return canvas
    hidden = sum(s is None for s in spots) + max(0, len(result.defects) - max_labels)
    text = f"{verdict.value} {result.camera} ({len(result.defects)} defects" + (
        f", {hidden} not labelled)" if hidden else ")"
    ) + (", image head boxed" if result.part_box is not None else "")
    bc = {Verdict.PASS: (0, 140, 0), Verdict.FAIL: (0, 0, 200)}.get(verdict, (0, 120, 230))
    bscale = max(0.6, scale)
    bthick = max(1, round(bscale * 1.8))
    (tw, th), base = cv2.getTextSize(text, font, bscale, bthick)
    while tw > w - 8 and bscale > 0.3:  # the banner's text fits the picture's width
        bscale *= 0.9
        (tw, th), base = cv2.getTextSize(text, font, bscale, bthick)
    band = np.zeros((th + base + 12, w, 3), np.uint8)
    band[:] = bc
    cv2.putText(band, text, (4, th + 6), font, bscale, (255, 255, 255), bthick, cv2.LINE_AA)
    return np.ascontiguousarray(np.vstack([band, canvas]))
