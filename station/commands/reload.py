"""``station reload``: a running station takes a new calibration, rules, regions and model."""

from __future__ import annotations

import argparse
import json
import sys

from station.commands._common import add_config_options, config_from_args
from station.messaging.client import NoAnswer, request
from station.messaging.curve import client_curve


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station reload``."""
    p = sub.add_parser(
        "reload", help="make a running station read its config and calibration again",
        description="Ask a running station to read its config file and calibration again and "
        "take the new model (after a warm-up), rules, regions of interest, pipeline settings "
        "and calibration, all at once, without a restart. A cycle in flight finishes on the "
        "old set. A bad file leaves the running set in force and the reply says why. Other "
        "sections (cameras, lights, messaging, ...) need a restart; the reply lists those "
        "that changed. Exit 0 reloaded, 1 refused, 3 no answer.",
    )
    add_config_options(p)
    p.add_argument("--endpoint", help="command endpoint (default: messaging.command)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="how long to wait for the new set (model load + warm-up; default 120 s)")
    p.add_argument("--json", action="store_true", help="print the reply's result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Send reload, print what took effect."""
    cfg = config_from_args(args)
    endpoint = args.endpoint or cfg.messaging.command
    try:
        reply = request(endpoint, {"command": "reload"}, args.timeout, client_curve(cfg))
    except NoAnswer as exc:
        print(f"station reload: {exc}", file=sys.stderr)
        return 3
    if not reply.get("ok"):
        err = reply.get("error") or {}
        print(f"station reload: refused: {err.get('code')}: {err.get('message')}",
              file=sys.stderr)
        return 1
    result = reply["result"]
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    model = result["model"]
    print(f"reloaded: model {model['model_id']} ({'trained' if model['trained'] else 'UNTRAINED'}"
          f", warm-up {result['warm_up_ms']:.0f} ms), calibration "
          f"{result['calibration_id'] or 'none'}")
    for w in result.get("calibration_warnings") or []:
        print(f"  ! {w}")
    for p in result.get("calibration_problems") or []:
        print(f"  ! {p}")
    if result.get("restart_needed"):
        print("  changed in the file but applied only by a restart: "
              + ", ".join(result["restart_needed"]))
    return 0
