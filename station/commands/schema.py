"""``station schema``: the JSON Schemas of every wire message, for HMI and PLC authors."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station schema``."""
    p = sub.add_parser(
        "schema", help="print the JSON Schemas of every message",
        description="Print the JSON Schema of every message on the wire (request, reply, "
        "verdict, status, event; and the MQTT messages mqtt-verdict and mqtt-state) as one JSON "
        "object keyed by message name.",
    )
    p.add_argument("--message", choices=["request", "reply", "verdict", "status", "event",
                                         "mqtt-verdict", "mqtt-state"],
                   help="print only this message's schema")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the schemas."""
    from station.messaging.wire import json_schemas

    schemas = json_schemas()
    print(json.dumps(schemas[args.message] if args.message else schemas, indent=2))
    return 0
