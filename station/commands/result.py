"""``station result``: the verdict of one inspection from a running station, by id."""

from __future__ import annotations

import argparse
import json
import sys

from station.commands._common import add_config_options, config_from_args
from station.commands.trigger import EXIT_BY_VERDICT, format_verdict
from station.messaging.client import NoAnswer, request
from station.messaging.curve import client_curve


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station result``."""
    p = sub.add_parser(
        "result", help="show one inspection's verdict by id",
        description="Ask a running station for the verdict of one inspection (the id "
        "`inspect` answered with). Exit 0 PASS, 1 FAIL, 2 ERROR, 3 no answer, 4 unknown id, "
        "5 still queued or running.",
    )
    add_config_options(p)
    p.add_argument("inspection_id", help="the inspection's id")
    p.add_argument("--endpoint", help="command endpoint (default: messaging.command)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S", help="default 5 s")
    p.add_argument("--json", action="store_true", help="print the reply's result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the verdict (or the state)."""
    cfg = config_from_args(args)
    endpoint = args.endpoint or cfg.messaging.command
    try:
        reply = request(endpoint, {"command": "result", "inspection_id": args.inspection_id},
                        args.timeout, client_curve(cfg))
    except NoAnswer as exc:
        print(f"station result: {exc}", file=sys.stderr)
        return 3
    if not reply.get("ok"):
        err = reply.get("error") or {}
        print(f"station result: {err.get('code')}: {err.get('message')}", file=sys.stderr)
        return 4 if err.get("code") == "NOT_FOUND" else 3
    result = reply["result"]
    if args.json:
        print(json.dumps(result, indent=2))
    elif result["state"] == "done":
        print(format_verdict(result["verdict"]))
    else:
        print(f"{result['inspection_id']}: {result['state']}")
    if result["state"] != "done":
        return 5
    return EXIT_BY_VERDICT.get(result["verdict"].get("verdict", "ERROR"), 2)
