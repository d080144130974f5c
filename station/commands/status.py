"""``station status``: ask a running station how it is."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from station.commands._common import add_config_options, config_from_args
from station.messaging.client import NoAnswer, request


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station status``."""
    p = sub.add_parser(
        "status", help="show a running station's status",
        description="Ask a running station for its status: state, problems, model (trained or "
        "not), cameras, lights, calibration, counts. Exit 3 when it does not answer.",
    )
    add_config_options(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.add_argument("--endpoint", help="command endpoint (default: messaging.command)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S", help="default 5 s")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the status."""
    endpoint = args.endpoint or config_from_args(args).messaging.command
    try:
        reply = request(endpoint, {"command": "status"}, args.timeout)
    except NoAnswer as exc:
        print(f"station status: {exc}", file=sys.stderr)
        return 3
    st = reply["result"]
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    print("\n".join(status_lines(st)))
    return 0


def status_lines(st: dict[str, Any]) -> list[str]:
    """A status message in words: the lines ``station status`` prints (and the HMI shows)."""
    model = st["model"]
    lines = [
        f"{st['station']}: {st['state'].upper()}  (pid {st['pid']}, up {st['uptime_s']:.0f} s)",
        f"  model   {model.get('model_id')}  "
        f"{'trained' if model.get('trained') else 'UNTRAINED: verdicts mean nothing'}  "
        f"on {model.get('device')}",
    ]
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
    c = st["counts"]
    lines.append(f"  counts  PASS {c['PASS']}  FAIL {c['FAIL']}  ERROR {c['ERROR']}   queue "
                 f"{st['queue']['waiting']}/{st['queue']['depth']}")
    lines.extend(f"  ! {p}" for p in st["problems"])
    return lines
