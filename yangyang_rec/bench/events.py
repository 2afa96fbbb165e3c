"""Figure 1: how much CPU the daemon spends per event, against a bare greenswitch client; and the stand-in's
own speed.

The daemon (recorder only: the shipper's uploads are figure 4's business) and a bare greenswitch
`InboundESL` with no-op handlers run as two processes on the same stand-in stream with the same
subscriptions (the daemon's own list, checked on the stand-in's side). Events handled per CPU
second = events delivered / CPU seconds the process used (from /proc), idle use subtracted: on a
shared 2-core machine that is steadier than wall time, and it is what bounds a one-loop daemon.

The stand-in's speed: one raw reader process subscribed to ALL, calls with no ring or talk time,
events received / wall seconds between the first and the last.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import gevent

from yangyang_rec import calls as call_machine
from yangyang_rec.bench.figures import Figure
from yangyang_rec.bench.harness import Caller, Daemon, TimedStandIn, full_lines
from yangyang_rec.lines import load_plan
from yangyang_rec.local_processes import cpu_seconds, stop
from yangyang_rec.settings import Settings


class Reader:
    """`python -m yangyang_rec.bench.event_reader MODE ...` as a process; its counts when stopped."""

    def __init__(self, mode: str, port: int, names: list[str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "yangyang_rec.bench.event_reader", mode, str(port), "ClueCon", *names],
            stdout=subprocess.PIPE, text=True,
        )

    def wait_subscribed(self, fs: TimedStandIn, before: int) -> None:
        deadline = time.monotonic() + 20
        while sum(1 for c in fs.clients if c.fmt) <= before:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the event reader did not subscribe")
            gevent.sleep(0.05)

    def finish(self) -> dict:
        stop(self.proc)
        out = self.proc.stdout.read() if self.proc.stdout else ""
        lines = [line for line in out.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {"events": 0, "first": None, "last": None}


def settle(fs: TimedStandIn, pids: list[int], quiet_cpu: float = 0.02, timeout: float = 60.0) -> None:
    """Wait until the stand-in's queues are empty and the processes stop using CPU."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(c.idle for c in list(fs.clients)):
            before = [cpu_seconds(p) for p in pids]
            gevent.sleep(0.5)
            if all(cpu_seconds(p) - b <= quiet_cpu for p, b in zip(pids, before, strict=True)):
                return
        else:
            gevent.sleep(0.1)


def standin_speed(calls: int, lines: list[str], say) -> Figure:
    fs = TimedStandIn(port=0, time_scale=1.0).start()
    try:
        reader = Reader("raw", fs.port, ["ALL"])
        reader.wait_subscribed(fs, 0)
        caller = Caller(fs, lines, lines)
        for i in range(calls):
            caller.place(lines[i % len(lines)], ring_wall=0, talk_wall=0)
        fs.wait_idle(120)
        settle(fs, [reader.proc.pid])
        got = reader.finish()
    finally:
        fs.stop()
    span = (got["last"] or 0) - (got["first"] or 0)
    rate = got["events"] / span if span > 0 else None
    say(f"events: stand-in sent {got['events']} events at {rate or 0:.0f}/s")
    return Figure("stand-in: events/s it writes", rate, "events/s", ">= 20,000",
                  f"{calls} calls, no ring or talk time, one raw reader subscribed to ALL")


def measure(settings: Settings, workdir: Path, calls: int, say) -> list[Figure]:
    plan = load_plan(settings.lines_file)
    recorded = full_lines(plan)
    figures = [standin_speed(calls, recorded, say)]
    names = list(call_machine.EVENTS)
    fs = TimedStandIn(port=0, time_scale=1.0).start()
    try:
        with Daemon(settings, fs, workdir / "daemon-events.log", ship=False) as daemon:
            bare = Reader("greenswitch", fs.port, names)
            bare.wait_subscribed(fs, 1)
            subscriptions = {frozenset(c.names) for c in fs.clients if c.fmt}
            if len(subscriptions) != 1:
                raise RuntimeError(f"the daemon and the bare client subscribe differently: {subscriptions}")
            subscribed = subscriptions.pop()
            pids = [daemon.pid, bare.proc.pid]
            settle(fs, pids)
            idle0 = [cpu_seconds(p) for p in pids]
            gevent.sleep(2)
            idle_rate = [(cpu_seconds(p) - c) / 2 for p, c in zip(pids, idle0, strict=True)]
            fs.emitted.clear()
            cpu0, t0 = [cpu_seconds(p) for p in pids], time.monotonic()
            Caller(fs, recorded, recorded).at_rate(rate=100, count=calls, ring_wall=0.2, talk_wall=1.0)
            fs.wait_idle(120)
            settle(fs, pids)
            window = time.monotonic() - t0
            used = [max(1e-6, cpu_seconds(p) - c - r * window) for p, c, r in zip(pids, cpu0, idle_rate, strict=True)]
            delivered = sum(n for name, n in fs.emitted.items() if name in subscribed)
            got = bare.finish()
    finally:
        fs.stop()
    daemon_rate, bare_rate = delivered / used[0], delivered / used[1]
    say(f"events: {delivered} events; daemon {daemon_rate:.0f}/CPU-s, bare greenswitch {bare_rate:.0f}/CPU-s "
        f"(it counted {got['events']})")
    note = (f"{calls} recorded calls at 100/s, {delivered} events of {', '.join(names)}; "
            f"CPU s daemon {used[0]:.2f}, bare {used[1]:.2f}; the bare client counted {got['events']}")
    figures += [
        Figure("events: daemon / bare greenswitch", daemon_rate / bare_rate, "ratio", ">= 0.8", note),
        Figure("events: daemon handles", daemon_rate, "events/CPU-s"),
        Figure("events: bare greenswitch reads", bare_rate, "events/CPU-s"),
    ]
    return figures
