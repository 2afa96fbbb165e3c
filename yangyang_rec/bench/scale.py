"""Figure 3: the most concurrent recorded calls the daemon holds with answer -> uuid_record p99 under
50 ms, and its resident memory there.

Calls are added step by step and held (never hung up) until the end: at each step the ramp is
placed at `ramp_rate`, the bench waits until the daemon has started a recording for every one,
then `probes` new calls at `probe_rate` measure the latency with that many calls open, and the
daemon's VmRSS is read from /proc. The stand-in runs at `time_scale` so that the WAV files the
held calls leave behind stay small (minutes of wall time are seconds of audio).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import gevent

from yangyang_rec.bench.figures import Figure, percentile
from yangyang_rec.bench.harness import Caller, Daemon, LoopLag, TimedStandIn, full_lines, record_latencies
from yangyang_rec.lines import load_plan
from yangyang_rec.local_processes import rss_mb
from yangyang_rec.settings import Settings

P99_LIMIT_MS = 50.0
HOLD_WALL_S = 3600.0


@dataclass(frozen=True)
class ScaleOptions:
    steps: tuple[int, ...] = (250, 500, 1000, 2000, 4000)
    probes: int = 40
    probe_rate: float = 10.0
    ramp_rate: float = 200.0
    time_scale: float = 0.01
    budget_s: float = 150.0


def recorded_count(fs: TimedStandIn, calls) -> int:
    return len(record_latencies(fs, calls))


def measure(settings: Settings, workdir: Path, opts: ScaleOptions, say) -> list[Figure]:
    plan = load_plan(settings.lines_file)
    recorded = full_lines(plan)
    fs = TimedStandIn(port=0, time_scale=opts.time_scale).start()
    lag = LoopLag().start()
    steps: list[dict] = []
    started = time.monotonic()
    try:
        with Daemon(settings, fs, workdir / "daemon-scale.log") as daemon:
            caller = Caller(fs, recorded, recorded, seed=23)
            held: list = []
            for target in opts.steps:
                if time.monotonic() - started > opts.budget_s:
                    say(f"scale: stopping before {target}: the time budget of {opts.budget_s:.0f} s is spent")
                    break
                ramp = max(0, target - len(held) - opts.probes)
                held += caller.at_rate(opts.ramp_rate, ramp, ring_wall=0.2, talk_wall=HOLD_WALL_S)
                deadline = time.monotonic() + 30 + ramp / 100
                while recorded_count(fs, held) < len(held) and time.monotonic() < deadline:
                    gevent.sleep(0.5)
                lag_mark = len(lag.samples)
                probes = caller.at_rate(opts.probe_rate, opts.probes, ring_wall=0.2,
                                        talk_wall=HOLD_WALL_S)
                gevent.sleep(1.0)
                held += probes
                ms = [x * 1000 for x in record_latencies(fs, probes)]
                step = {
                    "calls": len(held), "recording": recorded_count(fs, held), "p99_ms": percentile(ms, 99),
                    "probes_recorded": len(ms), "rss_mb": rss_mb(daemon.pid), "standin_lag_p99_ms": lag.p99_ms(lag_mark),
                }
                step["ok"] = (step["recording"] == step["calls"] and len(ms) == len(probes)
                              and step["p99_ms"] < P99_LIMIT_MS)
                steps.append(step)
                say(f"scale: {step['recording']}/{step['calls']} recording, probe p99 {step['p99_ms']:.1f} ms, "
                    f"daemon {step['rss_mb']:.0f} MB, stand-in lag p99 {step['standin_lag_p99_ms']:.1f} ms")
                if not step["ok"]:
                    break
    finally:
        lag.stop()
        fs.stop()
    good = [s for s in steps if s["ok"]]
    best = good[-1] if good else None
    note = "; ".join(f"{s['calls']} calls: p99 {s['p99_ms']:.1f} ms, {s['rss_mb']:.0f} MB"
                     + ("" if s["ok"] else f" (short: {s['recording']} recording)") for s in steps)
    return [
        Figure("scale: concurrent recorded calls (p99 < 50 ms)", best["calls"] if best else 0, "calls", ">= 2,000",
               note + f"; steps stop at {opts.steps[-1]} or after {opts.budget_s:.0f} s"),
        Figure("scale: daemon memory there", best["rss_mb"] if best else None, "MB", "<= 150"),
    ]
