"""View models: the plain data each page shows, built from verdicts, status and the store.

Pure functions (no web framework, no sockets): the pages render exactly what these return,
the live page's script renders :func:`inspection_view` from the event stream the same way
the server renders it from the store, and the unit tests check them directly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from config.rules import RulesConfig
from pipeline.overlay import colour
from pipeline.types import Defect
from pipeline.verdict import fails, rule_for
from station.hmi.charts import VERDICT_COLOURS, hbars, histogram, stacked_bars
from station.hmi.clock import Clock, ShiftWindow, iso_utc, parse_iso
from station.hmi.records import VERDICTS, Filters, Row
from station.hmi.state import Disagreement
from station.words import status_lines

#: (url, kind) of the picture shown for one camera: kind "photo" (the kept preview),
#: "defect map" (no preview here: the published map), or (None, "none").
ImageFinder = Callable[[dict[str, Any], str], tuple[str | None, str]]

MAX_PART_ID = 128


def css_colour(class_index: int) -> str:
    """The class colour of the overlays (``pipeline.overlay.colour``) as ``#rrggbb``."""
    b, g, r = colour(class_index)
    return f"#{r:02x}{g:02x}{b:02x}"


def _num(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else (f"{v:.1f}" if v >= 1 or v == 0 else f"{v:.2g}")


CONFIG_RULES = "config-rules"
#: How pipeline.verdict.describe() places a defect in a reason: "... at (x, y) on cam0 (score"
_CITED = re.compile(r" at \((-?\d+), (-?\d+)\) on (\S+) \(score")
#: How the image-head rule names its class: "(image head; most likely Crack)"
_HEAD_CLASS = re.compile(r"\(image head; most likely ([^)]+)\)")


def cited(reasons: Iterable[str]) -> set[tuple[str, int, int]]:
    """(camera, x, y) of every defect a reason names (the format of pipeline.verdict)."""
    out = set()
    for reason in reasons:
        for x, y, camera in _CITED.findall(reason):
            out.add((camera, int(x), int(y)))
    return out


def decision_of(header: Mapping[str, Any]) -> str:
    """What decided this verdict: the model's operating point id (``op-…``) or
    ``config-rules`` (also for a header from before the station said)."""
    return str((header.get("model") or {}).get("operating_point") or CONFIG_RULES)


def config_rules_text(rules: RulesConfig) -> str:
    """The verdict rules of the config, in words."""
    def rule_text(name: str) -> str:
        r = rule_for(rules, name)
        area = f">= {_num(r.min_area_mm2)} mm²" if r.min_area_mm2 else (
            f">= {r.min_area_px} px" if r.min_area_px else "any size")
        return (f"{name}: {area}, score >= {r.min_score:g}"
                + (f", more than {r.max_count}" if r.max_count else ""))

    parts = [rule_text("default")] + [rule_text(c) for c in sorted(rules.classes)]
    return "config rules: fails when " + "; ".join(parts)


def operating_point(
    header: Mapping[str, Any], status_model: Mapping[str, Any] | None, rules: RulesConfig
) -> dict[str, str]:
    """What decided the verdict: its id (from the verdict) and, in words, the station's own
    description (from its status, when that names the same decision) or the config's rules."""
    decision = decision_of(header)
    model = status_model or {}
    if model.get("operating_point") == decision and model.get("decision"):
        text = str(model["decision"])
    elif decision == CONFIG_RULES:
        text = config_rules_text(rules)
    else:
        text = f"the model's operating point {decision} (details: station model info)"
    return {"id": decision, "text": text}


def _defect(d: Mapping[str, Any]) -> Defect:
    return Defect(
        camera=str(d.get("camera", "")), class_name=str(d["class_name"]),
        class_index=int(d["class_index"]), area_px=int(d["area_px"]),
        area_mm2=None if d.get("area_mm2") is None else float(d["area_mm2"]),
        box=tuple(d["box"]), centroid=tuple(d["centroid"]),
        mean_score=float(d["mean_score"]), max_score=float(d["max_score"]),
        outline=[tuple(p) for p in d.get("outline", [])],
    )


def _box_points(box: tuple[int, int, int, int]) -> str:
    x, y, w, h = box
    return f"{x},{y} {x + w},{y} {x + w},{y + h} {x},{y + h}"


def _points(d: Defect) -> str:
    if len(d.outline) >= 3:
        return " ".join(f"{x},{y}" for x, y in d.outline)
    return _box_points(d.box)


def over_rule(d: Defect, named: set[tuple[str, int, int]], decision: str,
              rules: RulesConfig) -> bool:
    """Whether a defect made the part fail: a reason names it, or (when the config's rules
    decided) it fails its rule (reasons spell out at most five per class)."""
    if (d.camera, round(d.centroid[0]), round(d.centroid[1])) in named:
        return True
    return decision == CONFIG_RULES and fails(d, rule_for(rules, d.class_name))


#: The outline colour of the image head's mark (no class colour: the head names a class, the
#: mark is its 32 px cells, not a drawn region).
HEAD_COLOUR = "#ffffff"


def head_mark(cam: Mapping[str, Any], n: int) -> dict[str, Any] | None:
    """The image head's mark as a numbered entry like a defect's: where the head found a
    defect (``part_box``), when its rule failed the camera; None otherwise."""
    box = cam.get("part_box")
    if not box or len(box) != 4:
        return None
    x, y, w, h = (int(v) for v in box)
    name = str(cam.get("part_class") or "defect")
    score = cam.get("part_score")
    shown = f"{float(score):.2f}" if isinstance(score, int | float) else "-"
    return {
        "n": n, "class_name": f"{name} (image head)", "colour": HEAD_COLOUR,
        "points": _box_points((x, y, w, h)), "box": [x, y, w, h],
        "failing": True, "label": f"{n} {name} (head) {shown}", "area": f"{w} x {h} px box",
        "score": shown,
    }


def camera_view(cam: Mapping[str, Any], rules: RulesConfig, reasons: Iterable[str] = (),
                decision: str = CONFIG_RULES) -> dict[str, Any]:
    """One camera's defects, numbered: those over their rule first, then by size."""
    defects = [_defect({"camera": cam["camera"], **d}) for d in cam.get("defects", [])]
    named = cited(reasons)
    judged = [(over_rule(d, named, decision, rules), d) for d in defects]
    judged.sort(key=lambda fd: (not fd[0], -fd[1].area_px))
    out = []
    for n, (failing, d) in enumerate(judged, start=1):
        area = f"{_num(d.area_mm2)} mm²" if d.area_mm2 is not None else f"{d.area_px} px"
        out.append({
            "n": n, "class_name": d.class_name, "colour": css_colour(d.class_index),
            "points": _points(d), "box": list(d.box), "failing": failing,
            "label": f"{n} {d.class_name} {d.max_score:.2f}", "area": area,
            "score": f"{d.max_score:.2f}",
        })
    n_fail = sum(f for f, _ in judged)
    summary = f"{len(out)} defect{'s' if len(out) != 1 else ''}" + (
        f", {n_fail} over its rule" if n_fail == 1 else (
            f", {n_fail} over their rules" if n_fail else ""))
    head = head_mark(cam, len(out) + 1)
    if head is not None:
        out.append(head)
        head_class = cam.get("part_class") or "defect"
        summary += f"; the image head failed it: {head_class}, marked {head['n']}"
    return {
        "camera": str(cam["camera"]), "width": cam.get("width"), "height": cam.get("height"),
        "source": cam.get("source"), "defects": out, "n_failing": n_fail, "summary": summary,
    }


def inspection_view(
    header: Mapping[str, Any], clock: Clock, rules: RulesConfig, find_image: ImageFinder,
    status_model: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the Live view (and a part's page) shows of one inspection.

    ``status_model`` is the ``model`` of the station's latest status (it describes the
    operating point in words)."""
    verdict = str(header["verdict"])
    cameras = []
    for cam in header.get("cameras", []):
        view = camera_view(cam, rules, header.get("reasons", []), decision_of(header))
        view["image"], view["image_kind"] = find_image(dict(header), view["camera"])
        view["image_note"] = (
            "" if view["image"] else "no frame from this camera in this inspection"
            if view["width"] is None else
            "no picture kept of this frame (storage.preview_px is 0, or the disk budget "
            "storage.max_disk_mb pruned it)")
        cameras.append(view)
    reasons = list(header.get("reasons", []))
    if verdict == "PASS" and not reasons:
        below = sum(len(c["defects"]) for c in cameras)
        reasons = ["no defect reaches its rule" + (
            f" ({below} below {'it' if below == 1 else 'their rules'})" if below else "")]
    model = header.get("model") or {}
    return {
        "inspection_id": header["inspection_id"],
        "part_id": header.get("part_id") or "-",
        "verdict": verdict,
        "verdict_class": verdict.lower(),
        "time": clock.show(header.get("started_at")),
        "started_at": header.get("started_at"),
        "cycle": f"{float(header.get('duration_ms', 0.0)):.0f} ms",
        "reasons": reasons,
        "model": model.get("model_id") or "-",
        "model_note": "" if model.get("trained") else "UNTRAINED: verdicts mean nothing",
        "calibration": header.get("calibration_id") or "none",
        "operating_point": operating_point(header, status_model, rules),
        "cameras": cameras,
        "station": header.get("station"),
    }


# --- Health ---------------------------------------------------------------------------------


def status_view(
    status: Mapping[str, Any] | None, age_s: float | None, stale_after_s: float,
    feed_problem: str | None = None,
) -> dict[str, Any]:
    """The station's health in the words ``station status`` uses."""
    if status is None or age_s is None:
        return {
            "state": "NO STATUS", "state_class": "error", "lines": [],
            "problems": [feed_problem or "no status message from the station yet: is `station "
                         "run` running, and is messaging.publish its PUB endpoint?"],
            "age": None, "calibration_age": None,
        }
    stale = age_s > stale_after_s
    problems = list(status.get("problems", []))
    if stale:
        problems.insert(0, f"no status from the station for {age_s:.0f} s (hmi.stale_status_s "
                        f"= {stale_after_s:g} s): is it still running?")
    state = str(status.get("state", "?")).upper()
    cal = status.get("calibration") or {}
    return {
        "state": "NOT REPORTING" if stale else state,
        "state_class": "error" if stale else {"READY": "pass", "DEGRADED": "warn"}.get(
            state, "error"),
        "lines": status_lines(dict(status)),
        "problems": problems,
        "age": f"{age_s:.1f} s ago",
        "calibration_age": cal.get("age_days"),
    }


def alarm_view(error: Mapping[str, Any] | None, count: int, clock: Clock) -> dict[str, Any] | None:
    """The unacknowledged ERROR (the newest of ``count``), or None when all are acknowledged."""
    if error is None or count <= 0:
        return None
    reasons = list(error.get("reasons", [])) or ["no reason given"]
    return {
        "inspection_id": error["inspection_id"],
        "part_id": error.get("part_id") or "-",
        "time": clock.show(error.get("finished_at")),
        "finished_at": error.get("finished_at"),
        "reason": reasons[0],
        "count": count,
        "text": (f"ERROR at {clock.show(error.get('finished_at'))}, part "
                 f"{error.get('part_id') or '-'}: {reasons[0]}"
                 + (f" (and {count - 1} more unacknowledged)" if count > 1 else "")),
    }


def event_view(event: Mapping[str, Any], clock: Clock) -> dict[str, str]:
    """One station event as a line: time, kind, details."""
    data = event.get("data") or {}
    kind = str(event.get("kind", "?"))
    return {
        "time": clock.show(event.get("time")),
        "kind": kind,
        "detail": ", ".join(f"{k} {v}" for k, v in data.items()),
        "level": "error" if ("lost" in kind or "fault" in kind) else "info",
    }


# --- Shift ----------------------------------------------------------------------------------


def _counts() -> dict[str, int]:
    return dict.fromkeys(VERDICTS, 0)


def yield_text(c: Mapping[str, int]) -> str:
    """PASS as a share of every inspection, ``-`` when there were none."""
    total = sum(c.get(v, 0) for v in VERDICTS)
    return f"{100 * c.get('PASS', 0) / total:.1f} %" if total else "-"


def bucket_counts(
    minute_counts: Iterable[tuple[str, str, int]], windows: list[tuple[datetime, datetime]]
) -> list[dict[str, int]]:
    """Verdict counts per window ``[start, end)`` (aware UTC) from per-minute counts."""
    out = [_counts() for _ in windows]
    for minute, verdict, n in minute_counts:
        when = parse_iso(minute + ":00+00:00")
        for i, (start, end) in enumerate(windows):
            if start <= when < end:
                out[i][verdict] = out[i].get(verdict, 0) + n
                break
    return out


def failed_classes(
    failed: Iterable[tuple[list[dict[str, Any]], list[str], str]], rules: RulesConfig
) -> dict[str, int]:
    """FAIL parts per defect class: each FAIL (defects, reasons, decision) counts once for
    every class over its rule in it (as its reasons name them, or the image head's class);
    when none is named, once for every class it has."""
    out: dict[str, int] = {}
    for defects, reasons, decision in failed:
        ds = [_defect(d) for d in defects]
        named = cited(reasons)
        over = {d.class_name for d in ds if over_rule(d, named, decision, rules)}
        over |= {m.strip() for r in reasons for m in _HEAD_CLASS.findall(r)}
        for name in over or {d.class_name for d in ds} or {"(no defect listed)"}:
            out[name] = out.get(name, 0) + 1
    return out


def shift_view(
    window: ShiftWindow, minute_counts: list[tuple[str, str, int]], durations: list[float],
    failed: list[tuple[list[dict[str, Any]], list[str], str]], clock: Clock, rules: RulesConfig,
    now: datetime,
) -> dict[str, Any]:
    """One shift: counts per hour, totals, yield, FAIL by class, cycle-time histogram."""
    hours: list[tuple[datetime, datetime]] = []
    t = window.start
    while t < window.end:
        hours.append((t, min(t + timedelta(hours=1), window.end)))
        t += timedelta(hours=1)
    per_hour = bucket_counts(minute_counts, hours)
    labels = [clock.local(s).strftime("%H:%M") for s, _ in hours]
    totals = _counts()
    for c in per_hour:
        for v in VERDICTS:
            totals[v] += c[v]
    classes = failed_classes(failed, rules)
    ordered = sorted(durations)
    return {
        "label": window.label, "key": window.key,
        "start": clock.show(iso_utc(window.start), seconds=False),
        "end": clock.show(iso_utc(window.end), seconds=False),
        "running": window.start <= now < window.end,
        "totals": totals, "total": sum(totals.values()), "yield": yield_text(totals),
        "hours": [{"label": lab, **c} for lab, c in zip(labels, per_hour, strict=True)],
        "chart_hours": stacked_bars(
            labels, {v: [c[v] for c in per_hour] for v in VERDICTS},
            f"Inspections per hour, {window.label}", VERDICT_COLOURS),
        "classes": sorted(classes.items(), key=lambda kv: (-kv[1], kv[0])),
        "chart_classes": hbars(list(classes.items()), f"FAIL by defect class, {window.label}"),
        "cycle_n": len(ordered),
        "cycle_median": f"{ordered[len(ordered) // 2]:.0f} ms" if ordered else "-",
        "cycle_p95": f"{ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]:.0f} ms"
        if ordered else "-",
        "chart_cycle": histogram(durations, f"Cycle time of complete inspections, {window.label}"),
    }


def shift_rows(
    windows: list[ShiftWindow], minute_counts: list[tuple[str, str, int]]
) -> list[dict[str, Any]]:
    """Counts and yield of each shift (newest first)."""
    counts = bucket_counts(minute_counts, [(w.start, w.end) for w in windows])
    return [
        {"label": w.label, "key": w.key, **c, "total": sum(c.values()), "yield": yield_text(c)}
        for w, c in zip(windows, counts, strict=True)
    ]


# --- History --------------------------------------------------------------------------------


def parse_filters(params: Mapping[str, str], clock: Clock) -> Filters:
    """History's search form as store filters; ``ValueError`` naming the field and the fix."""
    part = (params.get("part") or "").strip() or None
    if part is not None and len(part) > MAX_PART_ID:
        raise ValueError(f"part id of {len(part)} characters: at most {MAX_PART_ID}")
    verdict = (params.get("verdict") or "").strip().upper() or None
    if verdict is not None and verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r}: choose PASS, FAIL or ERROR (or any)")
    bounds: dict[str, str | None] = {}
    for key in ("since", "until"):
        text = (params.get(key) or "").strip()
        if not text:
            bounds[key] = None
            continue
        try:
            naive = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{key} {text[:40]!r}: not a local time YYYY-MM-DDTHH:MM") from None
        bounds[key] = iso_utc(clock.from_local(naive.replace(tzinfo=None)))
    return Filters(part, verdict, bounds["since"], bounds["until"])


@dataclass(frozen=True)
class Page:
    """Which rows of a search a page shows."""

    number: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        """How many pages the search has (at least 1)."""
        return max(1, -(-self.total // self.size))


def history_rows(
    rows: list[Row], marks: Mapping[str, Disagreement], clock: Clock
) -> list[dict[str, Any]]:
    """History's table rows."""
    out = []
    for r in rows:
        reasons = "; ".join(r.reasons)
        mark = marks.get(r.id)
        out.append({
            "id": r.id, "part_id": r.part_id or "-", "time": clock.show(r.started_at),
            "verdict": r.verdict, "verdict_class": r.verdict.lower(),
            "cycle": f"{r.duration_ms:.0f}", "defects": r.n_defects,
            "reasons": reasons if len(reasons) <= 90 else reasons[:87] + "...",
            "disagrees": (f"operator says {mark.operator_says}" + (f": {mark.note}"
                          if mark.note else "")) if mark else "",
        })
    return out


CSV_COLUMNS = (
    "inspection_id", "part_id", "started_at_utc", "started_local", "verdict", "cycle_ms",
    "defects", "reasons", "model_id", "calibration_id", "operator_says", "operator_note",
)


def csv_cell(value: object) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_row(r: Row, mark: Disagreement | None, clock: Clock) -> list[str]:
    """One CSV line of the export, in ``CSV_COLUMNS`` order."""
    values: list[object] = [
        r.id, r.part_id, r.started_at, clock.show(r.started_at), r.verdict,
        f"{r.duration_ms:.1f}", r.n_defects, " | ".join(r.reasons), r.model_id,
        r.calibration_id, mark.operator_says if mark else "", mark.note if mark else "",
    ]
    return [csv_cell(v) for v in values]
