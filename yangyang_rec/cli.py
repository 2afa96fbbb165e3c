"""The `yangyang-rec` command: parse arguments, call one function, print.

Each command is a small function `cmd_<name>(args) -> int`; the work lives in the modules.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from yangyang_rec import __version__
from yangyang_rec.settings import LoadedSettings, SettingsError, load_settings


def _settings(args) -> LoadedSettings:
    return load_settings(Path(args.settings) if args.settings else None)


def cmd_config_show(args) -> int:
    loaded = _settings(args)
    public = loaded.settings.public()
    if args.json:
        print(json.dumps(public, indent=2, ensure_ascii=False))
        return 0
    width = max(len(k) for k in public)
    for name, value in public.items():
        print(f"{name:<{width}}  {value!s:<40}  ({loaded.sources.get(name, 'default')})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="yangyang-rec",
        description="Records the county's administrative phone lines on FreeSWITCH and keeps each "
        "recording exactly one year.",
    )
    p.add_argument("--version", action="version", version=f"yangyang-rec {__version__}")
    p.add_argument("--settings", metavar="FILE", help="settings file (default: config/yangyang-rec.yaml)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    config = sub.add_parser("config", help="show the effective settings").add_subparsers(dest="action", required=True)
    show = config.add_parser("show", help="print every setting, where it came from, secrets masked")
    show.add_argument("--json", action="store_true", help="print as JSON")
    show.set_defaults(func=cmd_config_show)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"yangyang-rec: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
