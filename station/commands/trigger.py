"""``station trigger``: inspect one part and print its verdict."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from station.commands._common import add_config_options, config_from_args
from station.messaging.client import NoAnswer, request
from station.messaging.curve import client_curve

EXIT_BY_VERDICT = {"PASS": 0, "FAIL": 1, "ERROR": 2}
EXIT_NO_ANSWER = 3
#: How long ``trigger`` waits for a ping before it says no station answers [s].
PING_TIMEOUT_S = 2.0
MAX_REASONS = 8  # lines of reasons on a terminal; --json has them all
MAX_DEFECTS = 5  # defects listed per camera on a terminal


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station trigger``."""
    p = sub.add_parser(
        "trigger", help="inspect one part and print the verdict",
        description="Send `inspect` to a running station, wait for the verdict and print it. "
        "Exit code: 0 PASS, 1 FAIL, 2 ERROR (or refused), 3 no answer (no station answers a "
        f"ping within {PING_TIMEOUT_S:g} s, or no verdict within --timeout).",
    )
    add_config_options(p)
    p.add_argument("--part-id", help="the part's id, recorded with the inspection (at most 128 "
                   "characters, no control characters)")
    p.add_argument("--json", action="store_true", help="print the verdict header as JSON")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="seconds to wait for the verdict (default 60)")
    p.add_argument("--endpoint", help="command endpoint (default: messaging.command of the "
                   "config)")
    p.set_defaults(func=run)


def format_verdict(h: dict[str, Any]) -> str:
    """A verdict header as a few lines for a terminal."""
    model = h.get("model") or {}
    lines = [
        f"{h['verdict']}  inspection {h['inspection_id']}  part {h.get('part_id') or '-'}  "
        f"{h['duration_ms']:.0f} ms",
        f"  model {model.get('model_id')} ({'trained' if model.get('trained') else 'UNTRAINED'})"
        f"  decided by {model.get('operating_point') or '-'}"
        f"  calibration {h.get('calibration_id') or 'none'}",
    ]
    reasons = h.get("reasons", [])
    for reason in reasons[:MAX_REASONS]:
        lines.append(f"  - {reason}")
    if len(reasons) > MAX_REASONS:
        lines.append(f"  - ... {len(reasons) - MAX_REASONS} more reason(s) (--json for all)")
    for cam in h.get("cameras", []):
        lines.append(f"  {cam['camera']}: {len(cam.get('defects', []))} defect(s)"
                     + (f"  [{cam['source']}]" if cam.get("source") else ""))
        for d in cam.get("defects", [])[:MAX_DEFECTS]:
            area = f"{d['area_mm2']:.2f} mm2" if d.get("area_mm2") is not None else ""
            lines.append(f"    {d['class_name']:<10} {d['area_px']:>7} px {area:>12}  "
                         f"max {d['max_score']:.2f} at ({d['centroid'][0]:.0f}, "
                         f"{d['centroid'][1]:.0f})")
        box = cam.get("part_box")
        if box:
            x, y, w, h_ = box
            lines.append(f"    image head: {cam.get('part_class') or 'defect'} (part score "
                         f"{cam.get('part_score', 0.0):.2f}) in x {x}..{x + w}, y {y}..{y + h_}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Trigger, wait, print, exit by verdict."""
    cfg = config_from_args(args)
    endpoint = args.endpoint or cfg.messaging.command
    keys = client_curve(cfg)  # None unless messaging.curve.enabled
    payload: dict[str, Any] = {"command": "inspect", "wait": True}
    if args.part_id:
        payload["part_id"] = args.part_id
    try:  # a ping first: no station is reported in seconds, not after --timeout
        request(endpoint, {"command": "ping"}, min(PING_TIMEOUT_S, args.timeout), keys)
    except NoAnswer:
        print(f"station trigger: no answer from {endpoint}: no station answers there (no "
              f"reply to a ping within {min(PING_TIMEOUT_S, args.timeout):g} s); start one with "
              "`station run`, or give its command endpoint with --endpoint or --config",
              file=sys.stderr)
        return EXIT_NO_ANSWER
    try:
        reply = request(endpoint, payload, args.timeout, keys)
    except NoAnswer as exc:
        print(f"station trigger: {exc}", file=sys.stderr)
        return EXIT_NO_ANSWER
    if not reply.get("ok"):
        err = reply.get("error") or {}
        print(f"station trigger: refused: {err.get('code')}: {err.get('message')}",
              file=sys.stderr)
        return EXIT_BY_VERDICT["ERROR"]
    header = reply["result"]
    print(json.dumps(header, indent=2) if args.json else format_verdict(header))
    return EXIT_BY_VERDICT.get(header.get("verdict", "ERROR"), 2)
