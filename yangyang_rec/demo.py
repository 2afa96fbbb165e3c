"""`make demo`: one office hour, end to end, on this machine alone.

Starts a local S3 server (moto) and the FreeSWITCH stand-in, runs the real daemon
(`yangyang-rec run`, a separate process, configured only through YYREC_* variables as
in production), places an office hour of calls over every line of lines.yaml, waits for
every recording to be indexed and shipped, then prints what happened and runs the same
`lifecycle` and `audit` commands the records officer uses. It stops everything it started.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gevent

from yangyang_rec.index import Call, open_index
from yangyang_rec.lines import Plan, load_plan
from yangyang_rec.local_processes import MotoServer, stop
from yangyang_rec.standin import FreeSwitchStandIn, PlacedCall


@dataclass(frozen=True)
class DemoOptions:
    lines_file: Path
    workdir: Path
    calls: int = 400
    time_scale: float = 60.0  # one office hour in one minute
    seed: int = 7
    settle_timeout: float = 120.0


def say(text: str = "") -> None:
    print(text, flush=True)


def expected_recorded(plan: Plan, call: PlacedCall) -> bool:
    """Would the county's plan record this call? (answered, on a full line, in its direction)"""
    if not call.answered or call.kind == "internal":
        return False
    line = plan.line(call.line)
    return line is not None and line.records(call.kind)


def demo_environment(opts: DemoOptions, s3_endpoint: str, esl_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        YYREC_ESL_HOST="127.0.0.1",
        YYREC_ESL_PORT=str(esl_port),
        YYREC_ESL_PASSWORD="ClueCon",
        YYREC_NODE="demo-fs1",
        YYREC_LINES_FILE=str(opts.lines_file),
        YYREC_SPOOL_DIR=str(opts.workdir / "spool"),
        YYREC_DATABASE_URL=f"sqlite:///{opts.workdir / 'index.sqlite3'}",
        YYREC_S3_ENDPOINT_URL=s3_endpoint,
        YYREC_S3_BUCKET="yangyang-rec-demo",
        YYREC_S3_ADDRESSING_STYLE="path",
        YYREC_S3_ACCESS_KEY_ID="demo",
        YYREC_S3_SECRET_ACCESS_KEY="demo-secret",
        YYREC_LOG_FORMAT="json",
        YYREC_LOG_LEVEL="info",
        PYTHONUNBUFFERED="1",
    )
    return env


def yyrec(*args: str) -> list[str]:
    return [sys.executable, "-m", "yangyang_rec", *args]


def run_step(title: str, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    say(f"\n$ yangyang-rec {' '.join(argv[3:])}    # {title}")
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    say((done.stdout + done.stderr).rstrip())
    return done


def wait_for_daemon(fs: FreeSwitchStandIn, daemon: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited with {daemon.returncode} before connecting; see its log")
        if any(c.authed and c.fmt for c in fs.clients):
            return
        gevent.sleep(0.05)
    raise TimeoutError("the daemon did not connect to the event socket in time")


def wait_until_shipped(timeout: float) -> tuple[int, int]:
    """Poll the index until every finished recording is uploaded; returns (finished, uploaded)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = list(Call.select(Call.record_state, Call.upload_state))
        open_rows = sum(r.record_state == "recording" for r in rows)
        waiting = sum(r.record_state != "recording" and r.upload_state in ("pending", "uploading") for r in rows)
        if (open_rows == 0 and waiting == 0) or time.monotonic() > deadline:
            return len(rows) - open_rows, sum(r.upload_state == "uploaded" for r in rows)
        gevent.sleep(0.5)


def department_table(plan: Plan, placed: list[PlacedCall]) -> tuple[list[str], bool]:
    """Per department: calls placed, answered, expected to be recorded, indexed, uploaded."""
    rows = {r.call_uuid: r for r in Call.select()}
    stats: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    clean = True
    for call in placed:
        line = plan.line(call.line)
        dept = line.department if line else "?"
        s = stats[dept]
        s["calls"] += 1
        s["answered"] += call.answered
        want = expected_recorded(plan, call)
        row = rows.pop(call.a_uuid, None)
        s["expected"] += want
        if row is not None:
            s["recorded"] += row.record_state == "completed"
            s["uploaded"] += row.upload_state == "uploaded"
            s["failed"] += row.record_state in ("failed", "missed", "partial")
        if want != (row is not None):
            clean = False
    if rows:
        clean = False
    names = {d.id: d.name for d in plan.departments}
    out = [f"{'department':<14} {'name':<16} {'calls':>6} {'answered':>9} {'to record':>10} "
           f"{'recorded':>9} {'uploaded':>9} {'failed':>7}"]
    total: collections.Counter = collections.Counter()
    for dept in sorted(stats):
        s = stats[dept]
        total.update(s)
        name = names.get(dept, "")
        pad = 16 - sum(2 if ord(ch) > 0x1100 else 1 for ch in name)
        out.append(f"{dept:<14} {name}{' ' * max(pad, 0)} {s['calls']:>6} {s['answered']:>9} {s['expected']:>10} "
                   f"{s['recorded']:>9} {s['uploaded']:>9} {s['failed']:>7}")
    out.append(f"{'total':<14} {'':<16} {total['calls']:>6} {total['answered']:>9} {total['expected']:>10} "
               f"{total['recorded']:>9} {total['uploaded']:>9} {total['failed']:>7}")
    clean = clean and total["recorded"] == total["expected"] == total["uploaded"]
    return out, clean


def run_demo(opts: DemoOptions) -> int:
    plan = load_plan(opts.lines_file)
    if opts.workdir.exists():
        shutil.rmtree(opts.workdir)
    opts.workdir.mkdir(parents=True)
    say(f"yangyang-rec demo: {len(plan.by_extension)} lines in {len(plan.departments)} departments, "
        f"{opts.calls} calls in one office hour played {opts.time_scale:g}x faster. Work files: {opts.workdir}")

    daemon = None
    fs = FreeSwitchStandIn(port=0, time_scale=opts.time_scale).start()
    with MotoServer(opts.workdir / "s3.log") as s3:
        try:
            env = demo_environment(opts, s3.endpoint, fs.port)
            say(f"local S3 server (moto) on {s3.endpoint}; FreeSWITCH stand-in on 127.0.0.1:{fs.port}")
            if run_step("set up the bucket: lifecycle, encryption, no public access",
                        yyrec("lifecycle", "--apply"), env).returncode:
                return 1
            daemon_log = open(opts.workdir / "daemon.log", "wb")  # noqa: SIM115 - closed below
            daemon = subprocess.Popen(yyrec("run"), env=env, stdout=daemon_log, stderr=subprocess.STDOUT)
            wait_for_daemon(fs, daemon, timeout=30)
            say(f"\nthe daemon (pid {daemon.pid}) is connected; its log: {opts.workdir / 'daemon.log'}")

            started = time.monotonic()
            rate = opts.calls / 3600.0  # calls per second of office time; the stand-in scales it
            say(f"placing {opts.calls} calls at {rate * opts.time_scale:.1f} calls/s ...")
            placed = fs.run_traffic(plan, calls=opts.calls, rate=rate, seed=opts.seed)
            if not fs.wait_idle(timeout=opts.settle_timeout):
                say("some calls did not end in time")
            say(f"all calls ended after {time.monotonic() - started:.0f} s; waiting for the index and uploads ...")

            open_index(env["YYREC_DATABASE_URL"])
            finished, uploaded = wait_until_shipped(opts.settle_timeout)
            say(f"{finished} recordings indexed, {uploaded} uploaded, "
                f"{time.monotonic() - started:.0f} s after the first call\n")
            table, clean = department_table(plan, placed)
            say("\n".join(table))
            say("('to record' counts answered calls on full lines in their direction; the other departments "
                "are on_demand or off in lines.yaml)")
            left = sorted(p.relative_to(opts.workdir) for p in (opts.workdir / "spool").rglob("*.wav"))
            say(f"\nspool after shipping: {len(left)} file(s) left")
            clean = clean and not left

            stop(daemon, grace=10)
            daemon_log.close()
            daemon = None
            run_step("recent calls as the telecom staff see them", yyrec("calls", "--limit", "5"), env)
            run_step("the bucket's retention rule", yyrec("lifecycle"), env)
            audit = run_step("retention audit: index, bucket and spool agree", yyrec("audit"), env)
            clean = clean and audit.returncode == 0
            say("\ndemo " + ("passed: every recorded call is indexed once, uploaded, and the audit is clean"
                             if clean else "FAILED: see the table and the daemon log above"))
            return 0 if clean else 1
        finally:
            stop(daemon, grace=10)
            fs.stop()
