"""Overlays: defects outlined in their class colour, labels that never overlap, a banner that
never covers a defect, outlines and labels that grow with the picture."""

from __future__ import annotations

import numpy as np

from pipeline.overlay import MIN_SIDE_PX, colour, draw_overlay, place_labels, to_display
from pipeline.types import CameraResult, Defect, InputImage, Verdict


def _defect(x: int, y: int, size: int = 20, cls: int = 2, name: str = "Crack") -> Defect:
    return Defect(camera="cam0", class_name=name, class_index=cls, area_px=size * size,
                  area_mm2=None, box=(x, y, size, size),
                  centroid=(x + size / 2, y + size / 2), mean_score=0.9, max_score=0.95,
                  outline=[(x, y), (x + size - 1, y), (x + size - 1, y + size - 1),
                           (x, y + size - 1)])


def _result(defects: list[Defect], h: int = 100, w: int = 100) -> CameraResult:
    dmap = np.zeros((h // 4, w // 4), np.uint8)
    return CameraResult("cam0", w, h, defects, dmap)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether two (x0, y0, x1, y1) rectangles share a pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _near(pixels: np.ndarray, bgr: tuple[int, int, int]) -> np.ndarray:
    return np.abs(pixels.astype(int) - np.array(bgr)).sum(axis=-1) < 60


def test_overlay_outlines_in_class_colour() -> None:
    """The outline's pixels carry the class colour; a large frame keeps its size."""
    image = InputImage("cam0", np.full((600, 600), 128, np.uint8), "Mono8")
    out = draw_overlay(image, _result([_defect(200, 300, 100)], 600, 600), fill_alpha=0.0)
    assert out.shape == (600, 600, 3) and out.dtype == np.uint8
    assert _near(out[350, 295:305], colour(2)).any()  # the right edge, x = 299
    assert tuple(int(v) for v in out[10, 10]) == (128, 128, 128)


def test_small_frames_are_enlarged_and_outlines_stay_visible() -> None:
    """A 100 px frame becomes a picture of at least MIN_SIDE_PX, enlarged by a whole factor,
    and its outline is at least 2 px wide there."""
    image = InputImage("cam0", np.full((100, 100), 128, np.uint8), "Mono8")
    out = draw_overlay(image, _result([_defect(20, 30)]), fill_alpha=0.0)
    k = out.shape[0] // 100
    assert out.shape == (100 * k, 100 * k, 3) and 100 * k >= MIN_SIDE_PX
    row = _near(out[(30 + 10) * k, :], colour(2))  # a row through the defect's middle
    runs = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])))
    widths = runs[1::2] - runs[0::2]
    assert len(widths) >= 2 and widths.min() >= 2  # left and right edges, each >= 2 px


def test_outline_width_grows_with_the_picture() -> None:
    """The outline of a defect on a 3000 px frame is wider than on a 600 px one."""

    def width(side: int) -> int:
        image = InputImage("cam0", np.full((side, side), 128, np.uint8), "Mono8")
        d = _defect(side // 3, side // 3, side // 4)
        out = draw_overlay(image, _result([d], side, side), fill_alpha=0.0)
        row = _near(out[side // 3 + side // 8, : side // 2], colour(2))
        return int(row.sum())

    assert width(3000) > width(600) >= 2


def test_banner_never_covers_a_defect() -> None:
    """With a verdict, the banner is a band above the picture: the defect at the top left
    corner keeps its outline, the picture below the band is the picture without banner."""
    image = InputImage("cam0", np.full((600, 800), 128, np.uint8), "Mono8")
    result = _result([_defect(0, 0, 60)], 600, 800)
    plain = draw_overlay(image, result, None, fill_alpha=0.0)
    bannered = draw_overlay(image, result, Verdict.FAIL, fill_alpha=0.0)
    band = bannered.shape[0] - plain.shape[0]
    assert band > 10 and bannered.shape[1] == plain.shape[1]
    assert np.array_equal(bannered[band:], plain)
    assert _near(bannered[band + 30, 0:6], colour(2)).any()


def test_labels_of_defects_at_one_spot_do_not_overlap() -> None:
    """Many defects at the same place: every label drawn lies apart from every other."""
    boxes = [(100, 100, 140, 140)] * 6
    spots = place_labels([(80, 20)] * 6, boxes, 400, 400)
    drawn = [s for s in spots if s is not None]
    assert len(drawn) >= 4
    for i, a in enumerate(drawn):
        for b in drawn[i + 1:]:
            assert not _overlap(a, b), (a, b)
        assert _overlap(a, (0, 0, 400, 400)) and min(a) >= 0 and max(a) <= 400


def test_a_label_that_fits_nowhere_is_left_out() -> None:
    """A label larger than the picture is not drawn (None), never printed over another."""
    assert place_labels([(500, 20)], [(10, 10, 20, 20)], 100, 100) == [None]


def test_labels_avoid_other_defects_when_they_can() -> None:
    """A label is not put over a neighbouring defect's box when a free place exists."""
    boxes = [(100, 100, 120, 120), (100, 70, 120, 98)]  # the second just above the first
    spots = place_labels([(30, 10), (30, 10)], boxes, 400, 400)
    first = spots[0]
    assert first is not None
    assert not _overlap(first, boxes[1])


def test_display_of_deep_and_bayer_formats() -> None:
    """12-bit mono is shifted to 8 bit, Bayer is demosaiced to colour."""
    deep = InputImage("c", np.full((4, 4), 4095, np.uint16), "Mono12", bits=12)
    assert int(to_display(deep).max()) == 255
    mosaic = np.zeros((6, 6), np.uint8)
    mosaic[0::2, 0::2] = 200  # red sites of BayerRG
    bgr = to_display(InputImage("c", mosaic, "BayerRG8"))
    assert tuple(int(v) for v in bgr[2, 2]) == (0, 0, 200)


def test_the_image_heads_box_is_drawn_white_and_labelled() -> None:
    """A camera the image head failed (part_box set) gets a white box with its own label
    plate, and the banner says so; without a box nothing white is drawn on a grey frame."""
    from pipeline.overlay import HEAD_COLOUR

    image = InputImage("cam0", np.full((600, 600), 60, np.uint8), "Mono8")
    result = _result([], 600, 600)
    result.part_box, result.part_class, result.part_score = (300, 200, 96, 128), "Blowhole", 5.5
    out = draw_overlay(image, result, fill_alpha=0.0)
    assert _near(out[260, 393:399], HEAD_COLOUR).any()  # the right edge, x = 395
    assert _near(out[0:200], HEAD_COLOUR).any()  # the label's text, above the box
    banner = draw_overlay(image, result, Verdict.FAIL, fill_alpha=0.0)
    assert banner.shape[0] > 600
    result.part_box = None
    assert not _near(draw_overlay(image, result, fill_alpha=0.0), HEAD_COLOUR).any()
