"""``station watch``: print verdicts and events as they are published."""

from __future__ import annotations

import argparse
import json
import sys

from station.commands._common import add_config_options, config_from_args
from station.commands.trigger import format_verdict
from station.messaging.client import subscribe
from station.messaging.curve import client_curve

EXIT_NOTHING = 3


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station watch``."""
    p = sub.add_parser(
        "watch", help="print verdicts and events as they are published",
        description="Subscribe to the station's PUB socket and print every verdict and event "
        "(and status with --status) until Ctrl-C, --count or --timeout. Exit code: 0 after "
        "--count verdicts, or at --timeout once the station was heard (a status counts); 3 "
        "when nothing at all was received within --timeout (no station publishes there), or "
        "fewer than --count verdicts.",
    )
    add_config_options(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--status", action="store_true", help="also print status messages")
    p.add_argument("--endpoint", help="publish endpoint (default: messaging.publish)")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="stop after S seconds without a message to print")
    p.add_argument("--count", type=int, metavar="N", help="stop after N verdicts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print messages until Ctrl-C, --timeout or --count."""
    if args.timeout is not None and args.timeout <= 0:
        raise SystemExit(f"station watch: --timeout must be > 0 s, got {args.timeout:g}")
    if args.count is not None and args.count < 1:
        raise SystemExit(f"station watch: --count must be at least 1, got {args.count}")
    cfg = config_from_args(args)
    endpoint = args.endpoint or cfg.messaging.publish
    keys = client_curve(cfg)  # None unless messaging.curve.enabled
    # status is always received (it tells a quiet station from none), printed with --status
    verdicts = received = 0
    shown = ("verdict", "event", "status") if args.status else ("verdict", "event")
    for topic, header, parts in subscribe(endpoint, ("verdict", "event", "status"),
                                          args.timeout, idle_topics=shown, curve=keys):
        received += 1
        if topic == "status" and not args.status:
            continue
        if args.json:
            print(json.dumps({"topic": topic, **header, "png_parts": len(parts)}), flush=True)
        elif topic == "verdict":
            print(format_verdict(header), flush=True)
        elif topic == "event":
            print(f"EVENT {header['kind']}  {header['time']}  {json.dumps(header['data'])}",
                  flush=True)
        else:
            print(f"STATUS {header['state']}  " + ("; ".join(header["problems"]) or "ok"),
                  flush=True)
        if topic == "verdict":
            verdicts += 1
            if args.count and verdicts >= args.count:
                return 0
    if not received:
        print(f"station watch: nothing published on {endpoint} within {args.timeout:g} s (a "
              "station publishes its status every messaging.status_interval_s); is `station "
              "run` running with this messaging.publish?", file=sys.stderr)
        return EXIT_NOTHING
    if args.count:
        print(f"station watch: {verdicts} of {args.count} verdict(s) within --timeout "
              f"{args.timeout:g} s", file=sys.stderr)
        return EXIT_NOTHING
    return 0
