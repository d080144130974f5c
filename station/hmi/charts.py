"""Charts as SVG drawn on the server: bars, stacked bars, a histogram.

Why not a JavaScript charting library: these three charts are a few dozen lines of SVG;
drawn here they need no script, no vendored file to keep up to date, print and scale
cleanly, carry their numbers as text (readable by tests and screen readers), and come out
the same in every browser. Every text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

WIDTH = 640
HEIGHT = 220
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 12, 36

VERDICT_COLOURS = {"PASS": "#1b8a3a", "FAIL": "#c62828", "ERROR": "#e08a00"}


def nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^k at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * exp >= value:
            return float(step * exp)
    return float(10 * exp)


def _svg(body: list[str], title: str, width: int = WIDTH, height: int = HEIGHT) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _axis(top: float, height: int) -> list[str]:
    """Horizontal grid lines with their values on the left (whole numbers: these are counts)."""
    out = []
    plot_h = height - TOP - BOTTOM
    steps = next((n for n in (4, 5, 2) if (top / n).is_integer()), 1)
    for i in range(steps + 1):
        v = top * i / steps
        y = height - BOTTOM - plot_h * i / steps
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                   'class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
    return out


def stacked_bars(
    labels: Sequence[str], series: dict[str, Sequence[int]], title: str,
    colours: dict[str, str] | None = None,
) -> str:
    """One bar per label, stacked by series (e.g. PASS / FAIL / ERROR per hour)."""
    colours = colours or VERDICT_COLOURS
    totals = [sum(s[i] for s in series.values()) for i in range(len(labels))]
    top = nice_max(max(totals, default=0))
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(labels))
    body = _axis(top, HEIGHT)
    every = max(1, math.ceil(len(labels) / 12))  # at most ~12 labels on the axis
    for i, label in enumerate(labels):
        x = LEFT + i * slot + slot * 0.15
        y = float(HEIGHT - BOTTOM)
        for name, values in series.items():
            v = values[i]
            if v <= 0:
                continue
            h = plot_h * v / top
            y -= h
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                f'fill="{colours.get(name, "#666")}"><title>{escape(label)}: {v} '
                f"{escape(name)}</title></rect>")
        if i % every == 0:
            body.append(f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                        f'text-anchor="middle">{escape(label)}</text>')
    legend_x = LEFT
    for name in series:
        body.append(f'<rect x="{legend_x}" y="{HEIGHT - 12}" width="10" height="10" '
                    f'fill="{colours.get(name, "#666")}"/>'
                    f'<text x="{legend_x + 14}" y="{HEIGHT - 3}">{escape(name)}</text>')
        legend_x += 80
    return _svg(body, title)


def hbars(items: Sequence[tuple[str, int]], title: str, colour: str = "#c62828") -> str:
    """Horizontal bars with their values, largest first (e.g. FAIL by defect class)."""
    items = sorted(items, key=lambda kv: (-kv[1], kv[0]))
    row = 26
    height = max(60, TOP + row * len(items) + 10)
    top = max((v for _, v in items), default=0) or 1
    label_w = 150
    plot_w = WIDTH - label_w - 60
    body = []
    if not items:
        body.append(f'<text x="{WIDTH / 2}" y="{height / 2}" text-anchor="middle" class="none">'
                    "none</text>")
    for i, (label, v) in enumerate(items):
        y = TOP + i * row
        w = plot_w * v / top
        body.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">{escape(label)}'
                    "</text>")
        body.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" '
                    f'fill="{colour}"/>')
        body.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 16}">{v}</text>')
    return _svg(body, title, WIDTH, height)


def histogram_bins(values: Sequence[float], bins: int = 20) -> tuple[list[float], list[int]]:
    """Edges (``bins + 1``, on round numbers) and counts of ``values``."""
    if not values:
        return [], []
    lo, hi = min(values), max(values)
    width = nice_max((hi - lo) / bins) if hi > lo else 1.0  # 1-2-5 steps, at least 1
    start = math.floor(lo / width) * width
    n = max(1, math.ceil((hi - start) / width + 1e-9))
    if start + n * width <= hi:
        n += 1
    edges = [start + i * width for i in range(n + 1)]
    counts = [0] * n
    for v in values:
        counts[min(n - 1, int((v - start) // width))] += 1
    return edges, counts


def histogram(values: Sequence[float], title: str, unit: str = "ms", bins: int = 20) -> str:
    """A histogram of ``values`` (e.g. cycle times), with median and 95th percentile marked."""
    edges, counts = histogram_bins(values, bins)
    body: list[str] = []
    if not counts:
        body.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="none">'
                    "no complete inspections</text>")
        return _svg(body, title)
    top = nice_max(max(counts))
    body += _axis(top, HEIGHT)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    span = edges[-1] - edges[0]

    def xpos(v: float) -> float:
        return LEFT + plot_w * (v - edges[0]) / span

    for i, c in enumerate(counts):
        if c:
            h = plot_h * c / top
            body.append(
                f'<rect x="{xpos(edges[i]):.1f}" y="{HEIGHT - BOTTOM - h:.1f}" '
                f'width="{max(1.0, xpos(edges[i + 1]) - xpos(edges[i]) - 1):.1f}" '
                f'height="{h:.1f}" fill="#3f6fb5"><title>{edges[i]:g} to {edges[i + 1]:g} '
                f"{escape(unit)}: {c}</title></rect>")
    every = max(1, math.ceil(len(edges) / 8))
    for i, e in enumerate(edges):
        if i % every == 0:
            body.append(f'<text x="{xpos(e):.1f}" y="{HEIGHT - BOTTOM + 16}" '
                        f'text-anchor="middle">{e:g}</text>')
    ordered = sorted(values)
    for name, q in (("median", 0.5), ("p95", 0.95)):
        v = ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]
        x = xpos(v)
        right = x > LEFT + plot_w * 0.7  # the text goes left of the line near the right edge
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" '
                    f'class="mark"/><text x="{x - 3 if right else x + 3:.1f}" '
                    f'y="{TOP + (10 if name == "median" else 24)}" class="mark" '
                    f'text-anchor="{"end" if right else "start"}">'
                    f"{name} {v:.0f} {escape(unit)}</text>")
    body.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 3}" text-anchor="end">'
                f"{escape(unit)}</text>")
    return _svg(body, title)
