"""``station config check FILE`` and ``station config show [FILE] [--json]``."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from config import dump_config, load_config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``station config``."""
    p = sub.add_parser("config", help="check or show a configuration",
                       description="Validate a config file, or print the effective config.")
    csub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = csub.add_parser(
        "check", help="validate a config file (exit 2 and the problems if it is invalid)",
        description="Validate FILE (or a shipped config name) with environment overrides, and "
        "check that the files it names exist: the checkpoint, the replay cameras' images and "
        "the region masks. Relative paths are resolved against the folder of the config file. "
        "Exit 0: valid; 2: invalid, with every problem listed.",
    )
    check.add_argument("file", metavar="FILE", help="config file or shipped name")
    check.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="override one key (repeatable)")
    check.set_defaults(func=check_cmd)
    show = csub.add_parser(
        "show", help="print the effective config, defaults filled in",
        description="Print the effective config (file + environment + --set, defaults filled).",
    )
    show.add_argument("file", metavar="FILE", nargs="?", help="config file or shipped name "
                      "(default: $STATION_CONFIG or 'default')")
    show.add_argument("--set", dest="overrides", action="append", default=[],
                      metavar="KEY=VALUE", help="override one key (repeatable)")
    show.add_argument("--json", action="store_true", help="JSON instead of YAML")
    show.set_defaults(func=show_cmd)
    ref = csub.add_parser(
        "reference", help="print the config reference (Markdown) generated from the schema",
        description="Print every key with its type, default, range, unit and description.",
    )
    ref.set_defaults(func=reference_cmd)


def check_cmd(args: argparse.Namespace) -> int:
    """Exit 0 and say so when the file is valid and the files it names exist; exit 2 with
    every problem otherwise."""
    from station.preflight import path_problems

    cfg = load_config(args.file, args.overrides)
    problems = path_problems(cfg)
    if problems:
        print(f"station config check: {args.file}: {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    print(f"{args.file}: OK ({len(cfg.cameras)} camera(s), lights: {cfg.lights.backend}, "
          f"model: {cfg.model.checkpoint}; relative paths resolved against {cfg.base_dir})")
    return 0


def show_cmd(args: argparse.Namespace) -> int:
    """Print the effective config."""
    data = dump_config(load_config(args.file, args.overrides))
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        print()
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    return 0


def reference_cmd(args: argparse.Namespace) -> int:
    """Print docs/configuration.md as generated from the schema."""
    from config.reference import reference_markdown

    sys.stdout.write(reference_markdown())
    return 0
