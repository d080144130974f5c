"""Tests of station.hmi.charts: SVG that carries its numbers, escapes its text."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from station.hmi.charts import hbars, histogram, histogram_bins, nice_max, stacked_bars


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML, or this raises


def test_nice_max() -> None:
    """The axis top is 1, 2 or 5 times a power of ten."""
    assert [nice_max(v) for v in (0, 1, 3, 7, 10, 11, 420)] == [1, 1, 5, 10, 10, 20, 500]


def test_stacked_bars_stack_and_label() -> None:
    """One rect per non-zero value, heights proportional, values in the tooltips."""
    svg = stacked_bars(["06:00", "07:00"], {"PASS": [8, 0], "FAIL": [2, 5]}, "per hour")
    root = _parse(svg)
    rects = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.find(
        "{http://www.w3.org/2000/svg}title") is not None]
    assert len(rects) == 3
    heights = {r.find("{http://www.w3.org/2000/svg}title").text: float(r.get("height", 0))
               for r in rects}
    assert abs(heights["06:00: 8 PASS"] / heights["06:00: 2 FAIL"] - 4) < 0.01
    assert "07:00: 5 FAIL" in heights


def test_axis_ticks_are_whole_counts() -> None:
    """Counts of up to 10: the axis reads 0, 2, 4, 6, 8, 10 (no 2.5)."""
    svg = stacked_bars(["a"], {"PASS": [9]}, "t")
    ticks = re.findall(r'text-anchor="end">([0-9.]+)</text>', svg)
    assert ticks == ["0", "2", "4", "6", "8", "10"]


def test_text_is_escaped() -> None:
    """A class name with markup stays text."""
    svg = hbars([("<script>x</script>", 3), ("Crack", 5)], "FAIL by <class>")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    root = _parse(svg)
    labels = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert labels.index("Crack") < labels.index("<script>x</script>")  # largest first


def test_empty_charts_say_so() -> None:
    """No data: a word, not a broken chart."""
    assert "none" in hbars([], "t") and "no complete inspections" in histogram([], "t")
    _parse(hbars([], "t"))


def test_histogram_bins_cover_every_value() -> None:
    """Edges on round numbers, every value counted once, the maximum in the last bin."""
    values = [180.0, 240.0, 255.0, 310.0, 777.0]
    edges, counts = histogram_bins(values, bins=10)
    assert sum(counts) == len(values) and len(edges) == len(counts) + 1
    assert edges[0] <= min(values) and edges[-1] > max(values)
    assert all(float(e).is_integer() for e in edges)
    assert histogram_bins([5.0, 5.0]) == ([5.0, 6.0], [2])
    svg = histogram(values, "cycle", "ms")
    _parse(svg)
    assert "median 255 ms" in svg and "p95 777 ms" in svg
