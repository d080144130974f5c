"""``station status``: ask a running station how it is."""

from __future__ import annotations

import argparse
import json
import sys

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
    model = st["model"]
    print(f"{st['station']}: {st['state'].upper()}  (pid {st['pid']}, up {st['uptime_s']:.0f} s)")
    print(f"  model   {model.get('model_id')}  "
          f"{'trained' if model.get('trained') else 'UNTRAINED: verdicts mean nothing'}  "
          f"on {model.get('device')}")
    if model.get("decision"):
        print(f"  decides {model.get('decision')}")
    for cam in st["cameras"]:
        print(f"  camera  {cam['name']:<8} {cam['backend']:<8} "
              f"{'connected' if cam['connected'] else 'NOT CONNECTED'}  {cam.get('detail', '')}")
    lights = st["lights"]
    print(f"  lights  {lights.get('backend')}  "
          f"{'connected' if lights.get('connected') else 'not connected'}")
    cal = st["calibration"]
    print(f"  calib   {cal.get('calibration_id') or 'none'}")
    c = st["counts"]
    print(f"  counts  PASS {c['PASS']}  FAIL {c['FAIL']}  ERROR {c['ERROR']}   queue "
          f"{st['queue']['waiting']}/{st['queue']['depth']}")
    for p in st["problems"]:
        print(f"  ! {p}")
    return 0
