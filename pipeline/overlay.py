"""Overlays for people: the image with every defect outlined and labelled by class."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from pipeline.preprocess import bayer_pattern
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


def colour(class_index: int) -> tuple[int, int, int]:
    """The BGR colour of a class index."""
    if class_index <= 0:
        return PALETTE[0]
    return PALETTE[1 + (class_index - 1) % (len(PALETTE) - 1)]


def to_display(image: InputImage) -> npt.NDArray[np.uint8]:
    """The raw pixels as an 8-bit BGR picture (Bayer demosaiced, deep formats shifted)."""
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


def draw_overlay(
    image: InputImage,
    result: CameraResult,
    verdict: Verdict | None = None,
    fill_alpha: float = 0.25,
    max_labels: int = 25,
) -> npt.NDArray[np.uint8]:
    """BGR picture: defect map tinted, each defect outlined, the largest labelled.

    The tint comes from the (downscaled) defect map, upsampled; outlines are the defects'
    polygons in full-frame pixels; the ``max_labels`` largest defects get a ``Class score``
    label. ``verdict`` adds a banner at the top left.
    """
    canvas = to_display(image).copy()
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
    scale = max(0.35, min(h, w) / 900)
    thick = max(1, round(scale * 2))
    for d in result.defects:
        c = colour(d.class_index)
        if len(d.outline) >= 2:
            pts = np.asarray(d.outline, dtype=np.int32).reshape(-1, 1, 2)
            cv2.polylines(canvas, [pts], True, c, thick, cv2.LINE_AA)
        else:
            x, y, bw, bh = d.box
            cv2.rectangle(canvas, (x, y), (x + bw - 1, y + bh - 1), c, thick)
    largest = sorted(result.defects, key=lambda d: -d.area_px)[:max_labels]
    for d in largest:
        c = colour(d.class_index)
        label = f"{d.class_name} {d.max_score:.2f}"
        x, y = d.box[0], max(d.box[1] - 3, 10)
        cv2.putText(canvas, label, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    thick + 2, cv2.LINE_AA)
        cv2.putText(canvas, label, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, c, thick,
                    cv2.LINE_AA)
    if verdict is not None:
        text = f"{verdict.value} {result.camera} ({len(result.defects)} defects)"
        bc = {Verdict.PASS: (0, 160, 0), Verdict.FAIL: (0, 0, 200)}.get(verdict, (0, 140, 255))
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        cv2.rectangle(canvas, (0, 0), (tw + 8, th + 10), bc, -1)
        cv2.putText(canvas, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                    thick, cv2.LINE_AA)
    return canvas
