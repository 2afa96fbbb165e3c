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
from yangyang_rec.dialplan import DEFAULT_OUT as DIALPLAN_OUT
from yangyang_rec.dialplan import render_dialplan, write_dialplan
from yangyang_rec.index import IndexOpenError
from yangyang_rec.lines import LinesError, Plan, load_plan
from yangyang_rec.notice import (
    NOTICE_TEXT,
    NOTICE_WAV,
    NoticeError,
    check_notice,
    read_wav_format,
    render_notice,
)
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


def cmd_dialplan(args) -> int:
    try:
        plan = _load_lines(args)
    except LinesError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        print("lines file refused; the dialplan was not changed.", file=sys.stderr)
        return 1
    if args.out == "-":
        sys.stdout.write(render_dialplan(plan))
        return 0
    out = Path(args.out)
    if args.check:
        if out.exists() and out.read_text(encoding="utf-8") == render_dialplan(plan):
            print(f"{out} matches the lines file")
            return 0
        print(f"{out} is stale: run `yangyang-rec dialplan --out {out}`, then `fs_cli -x reloadxml`", file=sys.stderr)
        return 1
    changed = write_dialplan(plan, out)
    print(f"{out} {'written' if changed else 'already up to date'}; then run `fs_cli -x reloadxml` on FreeSWITCH")
    return 0


def cmd_notice_check(args) -> int:
    if args.file:
        files = [Path(args.file)]
    else:
        try:
            plan = _load_lines(argparse.Namespace(file=None, settings=args.settings))
        except LinesError as exc:
            print("\n".join(exc.problems), file=sys.stderr)
            return 1
        files = sorted({Path(line.announcement) for d in plan.departments for line in d.lines if line.mode != "off"})
    failed = 0
    for file in files:
        try:
            check_notice(file)
        except NoticeError as exc:
            print(f"NOT PLAYABLE {exc}", file=sys.stderr)
            failed += 1
            continue
        fmt = read_wav_format(file)
        print(f"ok  {file}: mono 16-bit PCM, {fmt.rate} Hz, {fmt.seconds:.1f} s")
    return 1 if failed else 0


def cmd_notice_render(args) -> int:
    try:
        used = render_notice(Path(args.text), Path(args.out), use_sox=not args.no_sox)
    except NoticeError as exc:
        print(f"yangyang-rec: {exc}", file=sys.stderr)
        return 1
    fmt = read_wav_format(Path(args.out))
    print(f"{args.out}: rendered with espeak-ng + {used}, {fmt.rate} Hz mono 16-bit, {fmt.seconds:.1f} s")
    return 0


def cmd_run(args) -> int:
    # gevent must patch the standard library before anything the daemon uses opens a socket or thread.
    from gevent import monkey

    monkey.patch_all()
    from yangyang_rec.recorder import run_daemon
    from yangyang_rec.shipper import Shipper
    from yangyang_rec.spool_watch import SpoolWatch

    settings = _settings(args).settings
    shipper = Shipper(settings)
    services = [shipper.run_forever, SpoolWatch(settings).run_forever]
    return run_daemon(settings, services=services, on_ready_to_ship=shipper.wake)


def cmd_calls(args) -> int:
    from yangyang_rec.call_list import SinceError, as_json, parse_since, recent_calls, table
    from yangyang_rec.index import open_index

    settings = _settings(args).settings
    try:
        since = parse_since(args.since)
    except SinceError as exc:
        print(f"yangyang-rec: {exc}", file=sys.stderr)
        return 2
    open_index(settings.database_url, create=False)
    rows = recent_calls(since, args.line, args.limit)
    if args.json:
        for row in rows:
            print(json.dumps(as_json(row), ensure_ascii=False))
        return 0
    if not rows:
        print(f"no calls in the index since {args.since}" + (f" on line {args.line}" if args.line else ""))
        return 0
    print("\n".join(table(rows)))
    return 0


def cmd_demo(args) -> int:
    from gevent import monkey

    monkey.patch_all()
    from yangyang_rec.demo import DemoOptions, run_demo

    return run_demo(DemoOptions(lines_file=Path(args.lines), workdir=Path(args.workdir), calls=args.calls,
                                time_scale=args.time_scale, seed=args.seed))


def _storage(args):
    """Settings, open index and S3 client for the storage commands."""
    from yangyang_rec.bucket import make_client
    from yangyang_rec.index import open_index

    settings = _settings(args).settings
    open_index(settings.database_url, create=args.command in ("ship", "lifecycle"))
    return settings, make_client(settings)


def cmd_ship(args) -> int:
    from yangyang_rec.shipper import Shipper

    settings, client = _storage(args)
    result = Shipper(settings, client).drain_once()
    if args.json:
        print(json.dumps(result.as_dict(), ensure_ascii=False, default=str))
    else:
        mb = result.uploaded_bytes / 1e6
        print(f"uploaded {result.uploaded} ({mb:.1f} MB in {result.seconds:.1f} s), adopted {result.adopted}, "
              f"failed {result.failed}; still waiting: {result.backlog} ({result.backlog_bytes / 1e6:.1f} MB)")
        for error in result.errors[:20]:
            print(f"  failed: {error}")
    if result.outage:
        print(f"yangyang-rec: the bucket cannot be reached: {result.outage_error}\n"
              "  recordings stay queued in the index and the spool; run `yangyang-rec ship` again when it is back",
              file=sys.stderr)
        return 1
    return 1 if result.failed else 0


def cmd_lifecycle(args) -> int:
    from yangyang_rec.bucket import apply_bucket_setup, inspect_bucket, make_client

    settings = _settings(args).settings
    client = make_client(settings)
    report = apply_bucket_setup(client, settings) if args.apply else inspect_bucket(client, settings)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        print("\n".join(report.lines()))
        if not report.ok and not args.apply and not report.error:
            print("run `yangyang-rec lifecycle --apply` (or `make lifecycle APPLY=1`) to set it up")
    return 0 if report.ok else 1


def cmd_audit(args) -> int:
    from yangyang_rec.audit import audit

    settings, client = _storage(args)
    report = audit(settings, client, deep=args.deep)
    print("\n".join(report.lines()))
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), ensure_ascii=False, indent=2, default=str) + "\n",
                                   encoding="utf-8")
    return 0 if report.clean else 1


def _write_register(path: str) -> None:
    from yangyang_rec.purge import export_register

    with open(path, "w", newline="", encoding="utf-8") as out:
        count = export_register(out)
    print(f"destruction register: {count} entries written to {path}")


def cmd_purge(args) -> int:
    from yangyang_rec.purge import PurgeError, purge

    if args.register_csv and not Path(args.register_csv).resolve().parent.is_dir():
        # Checked before anything is destroyed, so a typo cannot leave a purge without its export.
        print(f"yangyang-rec: no folder for the register export {args.register_csv}; nothing was purged",
              file=sys.stderr)
        return 2
    settings, client = _storage(args)
    try:
        result = purge(settings, client, dry_run=args.dry_run)
    except PurgeError as exc:
        print(f"yangyang-rec: purge stopped, nothing half-done was recorded: {exc}", file=sys.stderr)
        return 1
    print("\n".join(result.lines()))
    if args.register_csv:
        _write_register(args.register_csv)
    return 0 if result.clean else 1


def cmd_register_export(args) -> int:
    from yangyang_rec.index import open_index

    open_index(_settings(args).settings.database_url, create=False)
    _write_register(args.csv)
    return 0


def cmd_simulate(args) -> int:
    from yangyang_rec.standin.simulate import parse_fault, simulate

    try:
        for fault in args.fault:
            parse_fault(fault)
    except ValueError as exc:
        print(f"yangyang-rec simulate: {exc}", file=sys.stderr)
        return 2
    if args.replay:
        if not Path(args.replay).is_file():
            print(f"yangyang-rec simulate: no transcript at {args.replay}", file=sys.stderr)
            return 2
        plan = []
    else:
        try:
            plan = load_plan(args.lines)
        except LinesError as exc:
            print(f"yangyang-rec simulate: {args.lines} cannot be used:\n{exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"yangyang-rec simulate: cannot read {args.lines}: {exc.strerror}", file=sys.stderr)
            return 2
    if args.calls < 0 or args.rate <= 0 or args.time_scale <= 0:
        print("yangyang-rec simulate: --calls must be >= 0, --rate and --time-scale > 0", file=sys.stderr)
        return 2
    simulate(plan, args.calls, args.rate, args.time_scale, args.seed, port=args.port, password=args.password,
             faults=args.fault, json_out=Path(args.json) if args.json else None,
             replay_file=Path(args.replay) if args.replay else None, wait_for_client_s=args.wait_for_client,
             hold_s=args.hold)
    return 0


def cmd_capture(args) -> int:
    from yangyang_rec.standin.capture import capture

    try:
        n = capture(args.host, args.port, args.password, Path(args.out), args.seconds)
    except (OSError, PermissionError, ConnectionError) as exc:
        print(f"yangyang-rec capture: {exc} (is FreeSWITCH's event socket at {args.host}:{args.port}?)",
              file=sys.stderr)
        return 1
    print(f"wrote {n} events to {args.out} (numbers and names scrubbed)")
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

    dialplan = sub.add_parser("dialplan", help="generate the FreeSWITCH dialplan include from the lines file")
    dialplan.add_argument("--lines", dest="file", metavar="FILE", help="lines file (default: the lines_file setting)")
    dialplan.add_argument("--out", metavar="FILE", default=str(DIALPLAN_OUT), help=f"output (default: {DIALPLAN_OUT}; - for stdout)")
    dialplan.add_argument("--check", action="store_true", help="do not write; exit 1 when --out differs from the lines file")
    dialplan.set_defaults(func=cmd_dialplan)

    notice = sub.add_parser("notice", help="check or render the recording notice callers hear").add_subparsers(
        dest="action", required=True
    )
    ncheck = notice.add_parser("check", help="is the notice a WAV FreeSWITCH plays (mono 16-bit PCM, 8/16 kHz)?")
    ncheck.add_argument("file", nargs="?", metavar="FILE", help="WAV file (default: every announcement in the lines file)")
    ncheck.set_defaults(func=cmd_notice_check)
    nrender = notice.add_parser("render", help="speak the notice text with espeak-ng into a mono 8 kHz WAV")
    nrender.add_argument("--text", metavar="FILE", default=str(NOTICE_TEXT), help=f"notice text (default: {NOTICE_TEXT})")
    nrender.add_argument("--out", metavar="FILE", default=str(NOTICE_WAV), help=f"WAV to write (default: {NOTICE_WAV})")
    nrender.add_argument("--no-sox", action="store_true", help="resample in Python even when sox is installed")
    nrender.set_defaults(func=cmd_notice_render)
    run = sub.add_parser("run", help="the recorder daemon: record calls on full lines until stopped (SIGTERM)")
    run.set_defaults(func=cmd_run)

    calls = sub.add_parser("calls", help="recent calls from the index: time (KST), line, caller (masked), states")
    calls.add_argument("--since", default="24h", help="30m, 2h, 7d, or a KST date/time like 2026-12-03 (default 24h)")
    calls.add_argument("--line", metavar="EXT", help="only calls on (or transferred through) this extension")
    calls.add_argument("--limit", type=int, default=200, help="at most this many calls, newest first (default 200)")
    calls.add_argument("--json", action="store_true", help="one JSON object per call, for scripts")
    calls.set_defaults(func=cmd_calls)
    demo = sub.add_parser("demo", help="one office hour end to end on a local S3 server and the FreeSWITCH stand-in")
    demo.add_argument("--lines", default="config/lines.yaml", help="lines file (default: config/lines.yaml)")
    demo.add_argument("--workdir", default="var/demo", help="work files, emptied first (default: var/demo)")
    demo.add_argument("--calls", type=int, default=400, help="calls in the office hour (default: 400)")
    demo.add_argument("--time-scale", type=float, default=60.0, help="how much faster than real time (default: 60)")
    demo.add_argument("--seed", type=int, default=7, help="traffic seed, same seed same calls (default: 7)")
    demo.set_defaults(func=cmd_demo)

    ship = sub.add_parser("ship", help="upload every waiting recording to the bucket once, print the counts")
    ship.add_argument("--json", action="store_true", help="print the counts as JSON")
    ship.set_defaults(func=cmd_ship)
    lifecycle = sub.add_parser("lifecycle", help="show the bucket setup (one-year rule, encryption, public block, lock)")
    lifecycle.add_argument("--apply", action="store_true", help="create the bucket if needed and set what is missing")
    lifecycle.add_argument("--json", action="store_true", help="print as JSON")
    lifecycle.set_defaults(func=cmd_lifecycle)
    audit = sub.add_parser("audit", help="retention audit: index, bucket and spool agree, nothing kept past its year")
    audit.add_argument("--json", metavar="FILE", help="also write the findings to FILE as JSON")
    audit.add_argument("--deep", action="store_true", help="also compare each object's SHA-256 (one HEAD per object)")
    audit.set_defaults(func=cmd_audit)
    purge = sub.add_parser("purge", help="destroy recordings past their year; write the destruction register")
    purge.add_argument("--dry-run", action="store_true", help="list what is due without changing anything")
    purge.add_argument("--register-csv", metavar="FILE", help="then export the destruction register as CSV")
    purge.set_defaults(func=cmd_purge)
    register = sub.add_parser("register", help="the destruction register").add_subparsers(dest="action", required=True)
    rexport = register.add_parser("export", help="write the destruction register as CSV (no personal data)")
    rexport.add_argument("--csv", metavar="FILE", default="destruction-register.csv",
                         help="CSV file (default: destruction-register.csv)")
    rexport.set_defaults(func=cmd_register_export)
    sim = sub.add_parser("simulate", help="FreeSWITCH stand-in placing an office mix of calls (or replaying a capture)")
    sim.add_argument("--lines", default="config/lines.yaml", help="lines file (default: config/lines.yaml)")
    sim.add_argument("--calls", type=int, default=200, help="how many calls to place (default 200)")
    sim.add_argument("--rate", type=float, default=20.0, help="calls started per simulated second (default 20)")
    sim.add_argument("--time-scale", type=float, default=1.0, help="run X times faster than real time (default 1)")
    sim.add_argument("--seed", type=int, default=1, help="same seed, same calls (default 1)")
    sim.add_argument("--port", type=int, default=8021, help="event-socket port on 127.0.0.1 (default 8021)")
    sim.add_argument("--password", default="ClueCon", help="event-socket password (default ClueCon)")
    sim.add_argument("--json", metavar="FILE", help="also write the placed calls to FILE as JSON")
    sim.add_argument("--replay", metavar="FILE", help="serve this transcript's events instead of placing calls")
    sim.add_argument("--fault", action="append", default=[], metavar="KIND[:ARG]@CALL",
                     help="e.g. restart@30, stall:5@10, duplicate:CHANNEL_ANSWER@0, delay:2@5, malformed@3")
    sim.add_argument("--wait-for-client", type=float, default=0.0, metavar="S",
                     help="wait up to S seconds for a client to subscribe before placing calls")
    sim.add_argument("--hold", type=float, default=0.0, metavar="S",
                     help="when done, keep serving up to S seconds while clients stay connected")
    sim.set_defaults(func=cmd_simulate)
    cap = sub.add_parser("capture", help="record a real FreeSWITCH event stream to a transcript, numbers scrubbed")
    cap.add_argument("--host", default="127.0.0.1")
    cap.add_argument("--port", type=int, default=8021)
    cap.add_argument("--password", default="ClueCon")
    cap.add_argument("--out", required=True, metavar="FILE")
    cap.add_argument("--seconds", type=float, help="stop after S seconds (default: until FreeSWITCH closes)")
    cap.set_defaults(func=cmd_capture)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (SettingsError, IndexOpenError) as exc:
        print(f"yangyang-rec: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A file or folder named on the command line or in the settings: say which, no traceback.
        print(f"yangyang-rec: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` or a closed pager: not an error; keep Python from complaining at exit.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0
