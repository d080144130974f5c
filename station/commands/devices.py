"""``station devices``: what every configured GenTL producer (.cti) sees.

For each producer (those of the config's GenICam cameras, those given with ``--cti``, and
every .cti in ``GENICAM_GENTL64_PATH``) it lists the devices with vendor, model, serial
number, user-defined name, device id and access status, and which configured camera each
one is. ``--open`` also opens and closes each device: the check that a vendor's producer
works on this Python version (harvesters#503). Every producer is asked in its own worker
process, so a crashing vendor library costs its own line only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from config.cameras import CameraConfig
from config.errors import CameraNotFound
from drivers.cameras import discover
from drivers.cameras._cti import GENTL_PATH_VAR, env_producers, resolve_producers
from station.commands._common import add_config_options, config_from_args

EXIT_OK = 0
EXIT_FAILURE = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station devices``."""
    parser = subparsers.add_parser(
        "devices",
        help="list the cameras every GenTL producer (.cti) sees",
        description="List the devices every configured GenTL producer sees (vendor, model, "
        f"serial, id, access status); {GENTL_PATH_VAR} is searched too.",
    )
    add_config_options(parser)
    parser.add_argument(
        "--cti", action="append", default=[], metavar="PATH",
        help="a producer to ask instead of the config's ('viky' = the genicam wheel's "
        "simulator); repeatable",
    )
    parser.add_argument(
        "--open", action="store_true",
        help="also open and close each device (proves the producer works on this Python)",
    )
    parser.add_argument(
        "--python", metavar="PATH",
        help="run the producers under this Python interpreter (default: the config's "
        "genicam.worker_python if all cameras agree, else this one); checks harvesters#503",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="S",
        help="longest wait for one producer's answer [s] (default 30)",
    )
    parser.set_defaults(func=run)


def _matches(cam: CameraConfig, index: int, device: dict[str, str]) -> bool:
    g = cam.genicam
    selectors = [(g.serial_number, device.get("serial_number")),
                 (g.user_defined_name, device.get("user_defined_name")),
                 (g.device_id, device.get("id"))]
    given = [(want, have) for want, have in selectors if want is not None]
    if given:
        return all(str(want) == have for want, have in given) and (
            g.index is None or g.index == index)
    return g.index == index


def run(args: argparse.Namespace) -> int:
    """List the devices; exit 1 if no producer could be asked or none answered."""
    cameras: list[CameraConfig] = []
    if args.cti:
        producers = resolve_producers(list(args.cti))
    else:
        cfg = config_from_args(args)
        cameras = [c for c in cfg.cameras if c.backend == "genicam"]
        entries = sorted({e for c in cameras for e in c.genicam.cti})
        try:
            producers = resolve_producers(entries) if entries else env_producers()
        except CameraNotFound:
            if entries:
                raise
            producers = []
    if not producers:
        raise CameraNotFound(
            f"no GenTL producer to ask: the config has no GenICam camera and {GENTL_PATH_VAR} "
            "names no .cti; try `station devices --cti viky`"
        )
    python = args.python
    if python is None:
        configured = {c.genicam.worker_python for c in cameras}
        python = configured.pop() if len(configured) == 1 else None
    reports = discover(producers, try_open=args.open, timeout_s=args.timeout, python=python)
    if args.json:
        print(json.dumps([
            {"producer": str(r.producer), "error": r.error, "devices": r.devices}
            for r in reports
        ], indent=2))
    else:
        for r in reports:
            _print_report(r.producer, r.devices, r.error, cameras)
    return EXIT_OK if any(r.error is None for r in reports) else EXIT_FAILURE


def _print_report(
    producer: Path, devices: list[dict[str, str]], error: str | None,
    cameras: list[CameraConfig],
) -> None:
    print(f"{producer}")
    if error is not None:
        print(f"  error: {error}")
        return
    if not devices:
        print("  no devices")
        return
    for i, d in enumerate(devices):
        used = [c.name for c in cameras if _matches(c, i, d)]
        print(f"  [{i}] {d.get('vendor', '')} {d.get('model', '')}")
        print(f"      serial: {d.get('serial_number') or '-'}   id: {d.get('id') or '-'}   "
              f"user name: {d.get('user_defined_name') or '-'}")
        line = f"      access: {d.get('access_status', '?')}"
        if "open" in d:
            line += f"   open: {d['open']}"
        if used:
            line += f"   configured as: {', '.join(used)}"
        print(line)
