"""``station watch``: print verdicts and events as they are published."""

from __future__ import annotations

import argparse
import json

from station.commands._common import add_config_options, config_from_args
from station.commands.trigger import format_verdict
from station.messaging.client import subscribe


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station watch``."""
    p = sub.add_parser(
        "watch", help="print verdicts and events as they are published",
        description="Subscribe to the station's PUB socket and print every verdict and event "
        "(and status with --status) until Ctrl-C.",
    )
    add_config_options(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--status", action="store_true", help="also print status messages")
    p.add_argument("--endpoint", help="publish endpoint (default: messaging.publish)")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="stop after S seconds without a message")
    p.add_argument("--count", type=int, metavar="N", help="stop after N verdicts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print messages until Ctrl-C, --timeout or --count."""
    endpoint = args.endpoint or config_from_args(args).messaging.publish
    topics = ("verdict", "event", "status") if args.status else ("verdict", "event")
    verdicts = 0
    for topic, header, parts in subscribe(endpoint, topics, args.timeout):
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
                break
    return 0
