"""``station history``: the inspections in the store, newest first."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from station.commands._common import (
    add_config_options,
    add_data_dir_option,
    config_from_args,
    data_dir,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station history``."""
    p = sub.add_parser(
        "history", help="list recorded inspections",
        description="List the newest inspections in the store of the data directory: "
        "--data-dir, else the config's storage.data_dir (--config, as `station run` was "
        "given), else $STATION_DATA_DIR, else $XDG_DATA_HOME/station. The first line says "
        "which store was read.",
    )
    add_config_options(p)
    add_data_dir_option(p)
    p.add_argument("-n", type=int, default=20, metavar="N", help="how many (default 20)")
    p.add_argument("--verdict", choices=["PASS", "FAIL", "ERROR"], help="only this verdict")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON lines)."""
    from station.store import DB_NAME, Store

    if args.n < 1:
        raise SystemExit("station history: -n must be at least 1")
    root = data_dir(args, config_from_args(args))
    if not (root / DB_NAME).exists():
        print(f"no inspections yet: {root / DB_NAME} does not exist "
              "(run `station run` and `station trigger`, or pass --data-dir)")
        return 0
    store = Store(root)
    try:
        rows = store.history(args.n, args.verdict)
    finally:
        store.close()
    if args.json:
        for row in rows:
            print(json.dumps(asdict(row)))
        return 0
    print(f"store {root / DB_NAME}")
    print(f"{'started (UTC)':<24} {'inspection':<24} {'part':<12} {'verdict':<7} "
          f"{'defects':>7} {'ms':>7}  reasons")
    for r in rows:
        reasons = "; ".join(r.reasons)
        if len(reasons) > 60:
            reasons = reasons[:57] + "..."
        print(f"{r.started_at[:23]:<24} {r.id:<24} {(r.part_id or '-')[:12]:<12} "
              f"{r.verdict:<7} {len(r.defects):>7} {r.duration_ms:>7.0f}  {reasons}")
    return 0
