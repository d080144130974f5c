"""Overlays: the defect is outlined in its class colour on a picture of the frame's size."""

from __future__ import annotations

import numpy as np

from pipeline.overlay import colour, draw_overlay, to_display
from pipeline.types import CameraResult, Defect, InputImage, Verdict


def _result() -> CameraResult:
    d = Defect(camera="cam0", class_name="Crack", class_index=2, area_px=400, area_mm2=None,
               box=(20, 30, 20, 20), centroid=(29.5, 39.5), mean_score=0.9, max_score=0.95,
               outline=[(20, 30), (39, 30), (39, 49), (20, 49)])
    dmap = np.zeros((25, 25), np.uint8)
    dmap[7:12, 5:10] = 2
    return CameraResult("cam0", 100, 100, [d], dmap)


def test_overlay_outlines_in_class_colour() -> None:
    """The outline's pixels carry the class colour; the picture keeps the frame's size."""
    image = InputImage("cam0", np.full((100, 100), 128, np.uint8), "Mono8")
    out = draw_overlay(image, _result(), Verdict.FAIL, fill_alpha=0.0)
    assert out.shape == (100, 100, 3) and out.dtype == np.uint8
    near = np.abs(out[40, 38:41].astype(int) - np.array(colour(2))).sum(axis=1)
    assert near.min() < 60  # anti-aliased line, so close to the colour, not exactly
    assert tuple(int(v) for v in out[90, 90]) == (128, 128, 128)


def test_display_of_deep_and_bayer_formats() -> None:
    """12-bit mono is shifted to 8 bit, Bayer is demosaiced to colour."""
    deep = InputImage("c", np.full((4, 4), 4095, np.uint16), "Mono12", bits=12)
    assert int(to_display(deep).max()) == 255
    mosaic = np.zeros((6, 6), np.uint8)
    mosaic[0::2, 0::2] = 200  # red sites of BayerRG
    bgr = to_display(InputImage("c", mosaic, "BayerRG8"))
    assert tuple(int(v) for v in bgr[2, 2]) == (0, 0, 200)
