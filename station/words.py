"""How the station's messages read to people: the words ``station status`` prints and the
HMI's Health view shows, written once so that both say the same."""

from __future__ import annotations

from typing import Any


def status_lines(st: dict[str, Any]) -> list[str]:
    """A status message in words: the lines ``station status`` prints (and the HMI shows)."""
    model = st["model"]
    lines = [
        f"{st['station']}: {st['state'].upper()}  (pid {st['pid']}, up {st['uptime_s']:.0f} s)",
        f"  model   {model.get('model_id')}  "
        f"{'trained' if model.get('trained') else 'UNTRAINED: verdicts mean nothing'}  "
        f"on {model.get('device')}"
        + (", test-time flips (3 passes a frame)" if model.get("flips") else ""),
    ]
    if model.get("decision"):
        lines.append(f"  decides {model.get('decision')}")
    for cam in st["cameras"]:
        lines.append(f"  camera  {cam['name']:<8} {cam['backend']:<8} "
                     f"{'connected' if cam['connected'] else 'NOT CONNECTED'}  "
                     f"{cam.get('detail', '')}")
    lights = st["lights"]
    lines.append(f"  lights  {lights.get('backend')}  "
                 f"{'connected' if lights.get('connected') else 'not connected'}")
    cal = st["calibration"]
    age = cal.get("age_days")
    lines.append(f"  calib   {cal.get('calibration_id') or 'none'}"
                 + (f"  ({age:g} days old)" if age is not None else ""))
    if st.get("data_dir"):
        lines.append(f"  data    {st['data_dir']}")
    c = st["counts"]
    q = st["queue"]
    busy = (f", {q['in_flight']} in the stages ({q.get('between_stages', 0)} between them)"
            if "in_flight" in q else "")
    lines.append(f"  counts  PASS {c['PASS']}  FAIL {c['FAIL']}  ERROR {c['ERROR']}   queue "
                 f"{q['waiting']}/{q['depth']}{busy}")
    ob = st.get("outbox")
    if ob:
        age = ob.get("oldest_age_s")
        lines.append(f"  plant   {ob['broker']}  "
                     f"{'connected' if ob['connected'] else 'NOT CONNECTED'}  backlog "
                     f"{ob['backlog']}/{ob['max_backlog']}"
                     + (f" (oldest {age:.0f} s)" if age is not None else "")
                     + f"  delivered {ob['delivered']}")
    lines.extend(f"  ! {p}" for p in st["problems"])
    return lines
