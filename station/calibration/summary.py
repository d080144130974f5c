"""The summary of a calibration run: one row per camera and step, the key number last."""

from __future__ import annotations

from collections.abc import Sequence

from station.calibration.steps import StepResult


def _reason(message: str, limit: int = 48) -> str:
    """A message without its "step: " prefix, cut to ``limit`` characters."""
    reason = message.split(": ", 1)[-1]
    return reason if len(reason) <= limit else reason[:limit - 1] + "…"


def short(result: StepResult) -> str:
    """The one number worth a summary cell (else the reason, shortened)."""
    m = result.measured
    if result.status == "SKIP":
        return _reason(result.message)
    if result.step == "exposure" and "exposure_us" in m:
        gain = m.get("gain_db")
        g = f", {gain:.1f} dB" if isinstance(gain, float) and gain else ""
        return f"{m['exposure_us']:.0f} µs{g}, mean {m.get('mean', 0):.3f}"
    if result.step == "focus" and "best" in m:
        return f"best {m['best']:.1f} (min {m.get('threshold')})"
    if result.step == "dark" and "mean" in m:
        return f"mean {m['mean']:.4f}"
    if result.step == "flat" and "uniformity" in m:
        return f"uniformity {m['uniformity']:.3f}"
    if result.step == "scale" and "mm_per_px" in m:
        return f"{m['mm_per_px']:.5f} mm/px"
    if result.step == "lights":
        rises = [f"{k[5:]} {v:+.3f}" for k, v in m.items()
                 if k.startswith("rise_") and isinstance(v, float)]
        if rises:
            return ", ".join(rises)
    return _reason(result.message)


def summary_table(results: Sequence[StepResult]) -> str:
    """A plain-text table: camera, step, result, the key number."""
    rows = [("camera", "step", "result", "measured")]
    rows += [(r.camera, r.step, r.status, short(r)) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True))
                     + "  " + row[3])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 8)
    return "\n".join(lines)
