"""``station status``: ask a running station how it is."""

from __future__ import annotations

import argparse
import json
import sys

from station.commands._common import add_config_options, config_from_args
from station.messaging.client import NoAnswer, request
from station.messaging.curve import client_curve
from station.words import status_lines


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
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="seconds to wait for the answer (default 5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the status."""
    cfg = config_from_args(args)
    endpoint = args.endpoint or cfg.messaging.command
    keys = client_curve(cfg)  # None unless messaging.curve.enabled
    try:
        reply = request(endpoint, {"command": "status"}, args.timeout, keys)
    except NoAnswer as exc:
        print(f"station status: {exc}", file=sys.stderr)
        return 3
    st = reply["result"]
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    print("\n".join(status_lines(st)))
    return 0
