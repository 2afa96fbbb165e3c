"""The `yangyang-rec` command: parse arguments, call one function, print.

Each command is a small function `cmd_<name>(args) -> int`; the work lives in the modules.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import unicodedata
from pathlib import Path

from yangyang_rec import __version__
from yangyang_rec.lines import LinesError, Plan, load_plan
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


def _load_lines(args) -> Plan:
    """The lines file named on the command line, else the `lines_file` setting."""
    path = Path(args.file) if args.file else _settings(args).settings.lines_file
    return load_plan(path)


def cmd_lines_check(args) -> int:
    try:
        plan = _load_lines(args)
    except LinesError as exc:
        for problem in exc.problems:
            print(problem)
        print(f"{len(exc.problems)} problem(s); nothing was changed. Fix them and run this check again.", file=sys.stderr)
        return 1
    for warning in plan.warnings:
        print(warning, file=sys.stderr)
    print(plan.summary())
    return 0


def _width(text: str) -> int:
    """Terminal columns: Korean (wide) characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def cmd_lines_show(args) -> int:
    try:
        plan = _load_lines(args)
    except LinesError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 1
    departments = plan.departments
    if args.department:
        chosen = plan.department(args.department)
        if chosen is None:
            known = ", ".join(d.id for d in plan.departments)
            print(f"no department {args.department!r}; the departments are: {known}", file=sys.stderr)
            return 1
        departments = (chosen,)
    header = ("EXTENSION", "DEPARTMENT", "MODE", "DIRECTION", "NOTICE_LEG", "NAME")
    rows = [header] + [
        (ln.extension, f"{ln.department} {ln.department_name}", ln.mode, ln.direction, ln.notice_leg, ln.name)
        for d in departments
        for ln in d.lines
    ]
    widths = [max(_width(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(row, widths, strict=True)).rstrip())
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

    lines = sub.add_parser("lines", help="check or show config/lines.yaml, the recording plan").add_subparsers(
        dest="action", required=True
    )
    check = lines.add_parser("check", help="validate the lines file: a summary, or every problem as FILE:LINE")
    check.add_argument("file", nargs="?", metavar="FILE", help="lines file (default: the lines_file setting)")
    check.set_defaults(func=cmd_lines_check)
    lshow = lines.add_parser("show", help="print the plan as a table: extension, department, mode, ...")
    lshow.add_argument("file", nargs="?", metavar="FILE", help="lines file (default: the lines_file setting)")
    lshow.add_argument("--department", metavar="ID", help="only this department (its ASCII id, e.g. welfare)")
    lshow.set_defaults(func=cmd_lines_show)
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
    except BrokenPipeError:
        # Output piped into `head` or a closed pager: not an error; keep Python from complaining at exit.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0
