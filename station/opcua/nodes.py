"""The station's OPC UA information model: node ids, browse names and types, as data.

Every node has a string id in the namespace :data:`NAMESPACE_URI` (``ns=2`` on this server,
but resolve the index from the server's NamespaceArray by the URI). The ids are part of the
interface: never rename one; add new ones instead (docs/plc.md lists them).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

NAMESPACE_URI = "urn:inspection-station:opcua"

#: Value types, named as OPC UA's built-in types.
UaType = Literal["Boolean", "Int32", "UInt32", "Double", "String", "DateTime"]

#: Verdict -> VerdictCode (0: no verdict yet).
VERDICT_CODES = {"": 0, "PASS": 1, "FAIL": 2, "ERROR": 3}
#: Event severity per verdict (1..1000).
VERDICT_SEVERITY = {"PASS": 100, "FAIL": 500, "ERROR": 800}


@dataclass(frozen=True)
class Var:
    """One variable: its id (``s=`` part), parent object id, browse name, type, array or not."""

    node_id: str
    parent: str
    name: str
    type: UaType
    array: bool = False
    doc: str = ""


STATION = "Station"
TRIGGER = "Station.Trigger"
LAST_VERDICT = "Station.LastVerdict"
COUNTERS = "Station.Counters"
STATUS = "Station.Status"
HEALTH = "Station.Health"
VERDICT_EVENT_TYPE = "VerdictEventType"

#: The objects below ``Objects``: (id, parent id or "" for Objects, browse name).
OBJECTS = (
    (STATION, "", "Station"),
    (LAST_VERDICT, STATION, "LastVerdict"),
    (COUNTERS, STATION, "Counters"),
    (STATUS, STATION, "Status"),
    (HEALTH, STATION, "Health"),
)


def _v(parent: str, name: str, type_: UaType, doc: str, array: bool = False) -> Var:
    return Var(f"{parent}.{name}", parent, name, type_, array, doc)


VARIABLES: tuple[Var, ...] = (
    _v(STATION, "Name", "String", "the station's name (config `name`)"),
    _v(STATION, "Ready", "Boolean", "true: a Trigger is accepted now"),
    _v(STATION, "Busy", "Boolean", "true from an accepted trigger until its verdict"),
    _v(LAST_VERDICT, "Sequence", "UInt32",
       "verdicts written since the server started; +1 per verdict, written last"),
    _v(LAST_VERDICT, "InspectionId", "String", "the inspection's id (Trigger's output)"),
    _v(LAST_VERDICT, "PartId", "String", "the part id given to Trigger ('' for none)"),
    _v(LAST_VERDICT, "Verdict", "String", "PASS, FAIL or ERROR ('' before the first)"),
    _v(LAST_VERDICT, "VerdictCode", "Int32", "0 none, 1 PASS, 2 FAIL, 3 ERROR"),
    _v(LAST_VERDICT, "Reasons", "String", "why FAIL or ERROR, one per element", array=True),
    _v(LAST_VERDICT, "StartedAt", "DateTime", "cycle start (UTC)"),
    _v(LAST_VERDICT, "FinishedAt", "DateTime", "cycle end (UTC)"),
    _v(LAST_VERDICT, "DurationMs", "Double", "cycle duration [ms]"),
    _v(LAST_VERDICT, "DefectClasses", "String", "defect class names, one per element",
       array=True),
    _v(LAST_VERDICT, "DefectCounts", "UInt32", "defects per class, aligned with DefectClasses",
       array=True),
    _v(LAST_VERDICT, "DefectTotal", "UInt32", "defects over all cameras and classes"),
    _v(LAST_VERDICT, "ModelId", "String", "the model that judged the part"),
    _v(LAST_VERDICT, "CalibrationId", "String", "the calibration in force ('' for none)"),
    _v(LAST_VERDICT, "Json", "String", "the whole verdict header as JSON (docs/messaging.md)"),
    _v(COUNTERS, "Pass", "UInt32", "PASS verdicts in the store"),
    _v(COUNTERS, "Fail", "UInt32", "FAIL verdicts in the store"),
    _v(COUNTERS, "Error", "UInt32", "ERROR verdicts in the store"),
    _v(COUNTERS, "Total", "UInt32", "all verdicts in the store"),
    _v(COUNTERS, "Yield", "Double", "Pass / Total (0..1; 0 when Total is 0)"),
    _v(STATUS, "State", "String", "starting, ready, degraded or stopping"),
    _v(STATUS, "Problems", "String", "why degraded, one per element", array=True),
    _v(HEALTH, "CamerasConnected", "Boolean", "every camera connected"),
    _v(HEALTH, "Cameras", "String", "one 'name: connected|NOT CONNECTED' per camera",
       array=True),
    _v(HEALTH, "LightsConnected", "Boolean", "the luminaire controller answers"),
    _v(HEALTH, "ModelId", "String", "the model loaded"),
    _v(HEALTH, "ModelTrained", "Boolean", "false: an untrained model, verdicts mean nothing"),
    _v(HEALTH, "CalibrationId", "String", "the calibration in force ('' for none)"),
    _v(HEALTH, "CalibrationAgeDays", "Double", "age of the calibration [days]; -1 for none"),
)

#: Fields of the verdict event (``VerdictEventType``, a BaseEventType), besides Message,
#: Severity, Time and SourceNode.
EVENT_FIELDS: tuple[tuple[str, UaType], ...] = (
    ("InspectionId", "String"),
    ("PartId", "String"),
    ("Verdict", "String"),
    ("VerdictCode", "Int32"),
    ("DefectTotal", "UInt32"),
)


def variable(node_id: str) -> Var:
    """The variable with this id (``KeyError`` lists none: ids are constants)."""
    for var in VARIABLES:
        if var.node_id == node_id:
            return var
    raise KeyError(node_id)


# --- values from the daemon's messages (pure functions) --------------------------------------

Value = bool | int | float | str | list[str] | list[int] | datetime | None


def _time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def verdict_values(header: Mapping[str, Any], sequence: int) -> dict[str, Value]:
    """LastVerdict's values from a verdict header (wire format), ``Sequence`` last."""
    per_class: Counter[str] = Counter()
    for cam in header.get("cameras") or []:
        for d in cam.get("defects") or []:
            per_class[str(d.get("class_name"))] += 1
    classes = sorted(per_class)
    verdict = str(header.get("verdict") or "")
    model = header.get("model") or {}
    p = LAST_VERDICT
    return {
        f"{p}.InspectionId": str(header.get("inspection_id") or ""),
        f"{p}.PartId": str(header.get("part_id") or ""),
        f"{p}.Verdict": verdict,
        f"{p}.VerdictCode": VERDICT_CODES.get(verdict, 3),
        f"{p}.Reasons": [str(r) for r in header.get("reasons") or []],
        f"{p}.StartedAt": _time(header.get("started_at")),
        f"{p}.FinishedAt": _time(header.get("finished_at")),
        f"{p}.DurationMs": float(header.get("duration_ms") or 0.0),
        f"{p}.DefectClasses": classes,
        f"{p}.DefectCounts": [per_class[c] for c in classes],
        f"{p}.DefectTotal": sum(per_class.values()),
        f"{p}.ModelId": str(model.get("model_id") or ""),
        f"{p}.CalibrationId": str(header.get("calibration_id") or ""),
        f"{p}.Json": json.dumps(dict(header), separators=(",", ":")),
        f"{p}.Sequence": sequence,
    }


def counter_values(counts: Mapping[str, int]) -> dict[str, Value]:
    """Counters from the store's counts per verdict."""
    n_pass, n_fail, n_error = (int(counts.get(k, 0)) for k in ("PASS", "FAIL", "ERROR"))
    total = n_pass + n_fail + n_error
    return {
        f"{COUNTERS}.Pass": n_pass, f"{COUNTERS}.Fail": n_fail,
        f"{COUNTERS}.Error": n_error, f"{COUNTERS}.Total": total,
        f"{COUNTERS}.Yield": n_pass / total if total else 0.0,
    }


def status_values(status: Mapping[str, Any]) -> dict[str, Value]:
    """Status, Health and Counters from a status message (wire format)."""
    cams = status.get("cameras") or []
    lights = status.get("lights") or {}
    model = status.get("model") or {}
    cal = status.get("calibration") or {}
    age = cal.get("age_days")
    out: dict[str, Value] = {
        f"{STATUS}.State": str(status.get("state") or ""),
        f"{STATUS}.Problems": [str(p) for p in status.get("problems") or []],
        f"{HEALTH}.CamerasConnected": bool(cams) and all(c.get("connected") for c in cams),
        f"{HEALTH}.Cameras": [
            f"{c.get('name')}: {'connected' if c.get('connected') else 'NOT CONNECTED'}"
            for c in cams
        ],
        f"{HEALTH}.LightsConnected": bool(lights.get("connected"))
        or lights.get("backend") == "none",
        f"{HEALTH}.ModelId": str(model.get("model_id") or ""),
        f"{HEALTH}.ModelTrained": bool(model.get("trained")),
        f"{HEALTH}.CalibrationId": str(cal.get("calibration_id") or ""),
        f"{HEALTH}.CalibrationAgeDays": float(age) if isinstance(age, int | float) else -1.0,
    }
    out.update(counter_values(status.get("counts") or {}))
    return out
