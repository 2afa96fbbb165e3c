"""Figure 2: answer -> uuid_record latency at office load, at office load while 30 MB files upload, and
at a burst of new calls per second. One daemon process, three phases in a row:

  office   every line busy (198 calls held), ~1 new call/s on the lines recorded in full
  uploads  the same, while the daemon's shipper uploads 30 MB recordings without pause
  burst    `burst_rate` new calls/s for `burst_s` seconds, short calls, the office calls still held

The stand-in runs slower than real time (`time_scale` < 1) so the held calls' WAV files stay small.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gevent
import gevent.event

from yangyang_rec.bench.figures import Figure, percentile
from yangyang_rec.bench.harness import (
    Caller,
    Daemon,
    LoopLag,
    TimedStandIn,
    daemon_env,
    full_lines,
    record_latencies,
)
from yangyang_rec.bench.uploads import UploadCase, empty_bucket, plain_client, write_sources
from yangyang_rec.lines import load_plan
from yangyang_rec.local_processes import stop
from yangyang_rec.settings import Settings
from yangyang_rec.shipper import MB

FEED_NODE = "bench-feed"


@dataclass(frozen=True)
class LatencyOptions:
    busy: int = 198
    office_rate: float = 1.0
    office_s: float = 40.0
    uploads_s: float = 40.0
    upload_mb: int = 30
    burst_rate: float = 200.0
    burst_s: float = 5.0
    time_scale: float = 0.05
    settle_s: float = 3.0  # after the ramp, and for the shipper to get busy


def wait_recorded(fs: TimedStandIn, calls: list, timeout: float) -> None:
    """Until the daemon has sent uuid_record for every call (late ones count, with their latency), or timeout."""
    deadline = time.monotonic() + timeout
    gevent.sleep(1.0)
    while len(record_latencies(fs, calls)) < len(calls) and time.monotonic() < deadline:
        gevent.sleep(0.5)


def _phase_figures(label: str, latencies: list[float], target: str | None, note: str) -> list[Figure]:
    ms = [x * 1000 for x in latencies]
    return [
        Figure(f"answer->record {label}: p50", percentile(ms, 50), "ms"),
        Figure(f"answer->record {label}: p99", percentile(ms, 99), "ms", target, note),
        Figure(f"answer->record {label}: max", max(ms) if ms else None, "ms"),
    ]


def measure(settings: Settings, workdir: Path, opts: LatencyOptions, say) -> list[Figure]:
    plan = load_plan(settings.lines_file)
    all_lines, recorded = sorted(plan.by_extension), full_lines(plan)
    fs = TimedStandIn(port=0, time_scale=opts.time_scale).start()
    lag = LoopLag().start()
    figures: list[Figure] = []
    try:
        with Daemon(settings, fs, workdir / "daemon-latency.log"):
            caller = Caller(fs, all_lines, recorded)
            # Ramp: every line busy; talk times spread so about one call ends per second, as in the office.
            hold = opts.busy / opts.office_rate
            for i, line in enumerate(all_lines[: opts.busy]):
                caller.place(line, ring_wall=0.5, talk_wall=hold * (i + 1) / opts.busy + opts.office_s + opts.uploads_s)
                gevent.sleep(0.02)
            gevent.sleep(opts.settle_s)

            lag_mark = len(lag.samples)
            office = caller.at_rate(opts.office_rate, round(opts.office_rate * opts.office_s), ring_wall=1.0, talk_wall=hold)
            wait_recorded(fs, office, timeout=10)
            office_lat = record_latencies(fs, office)
            office_lag = lag.p99_ms(lag_mark)
            say(f"latency office: {len(office_lat)}/{len(office)} recorded, p99 {percentile(office_lat, 99) * 1000:.1f} ms")

            source = write_sources(workdir, UploadCase(f"{opts.upload_mb} MB", opts.upload_mb * MB, 1))[0]
            feeder = subprocess.Popen(
                [sys.executable, "-m", "yangyang_rec.bench.upload_feeder", str(source.path), str(source.size),
                 source.sha256], env=daemon_env(settings, fs.port), stdout=subprocess.PIPE, text=True)
            gevent.sleep(opts.settle_s)  # the shipper is busy before the first sample
            lag_mark = len(lag.samples)
            during = caller.at_rate(opts.office_rate, round(opts.office_rate * opts.uploads_s), ring_wall=1.0, talk_wall=hold)
            wait_recorded(fs, during, timeout=10)
            stop(feeder)
            uploaded = int((feeder.stdout.read() or "0").split()[-1]) if feeder.stdout else 0
            uploads_lat = record_latencies(fs, during)
            uploads_lag = lag.p99_ms(lag_mark)
            say(f"latency uploads: {len(uploads_lat)}/{len(during)} recorded, {uploaded} x {opts.upload_mb} MB "
                f"uploaded, p99 {percentile(uploads_lat, 99) * 1000:.1f} ms")

            lag_mark = len(lag.samples)
            t0 = time.perf_counter()
            burst = caller.at_rate(opts.burst_rate, round(opts.burst_rate * opts.burst_s), ring_wall=0.2, talk_wall=2.0)
            wait_recorded(fs, burst, timeout=20)
            burst_answered = [fs.answered[c.a_uuid] for c in burst if c.a_uuid in fs.answered]
            span = (max(burst_answered) - min(burst_answered)) if len(burst_answered) > 1 else 0.0
            achieved = len(burst_answered) / span if span else 0.0
            burst_lat = record_latencies(fs, burst)
            burst_lag = lag.p99_ms(lag_mark)
            say(f"latency burst: offered {opts.burst_rate:.0f}/s, answered {achieved:.0f}/s, "
                f"{len(burst_lat)}/{len(burst)} recorded, p99 {percentile(burst_lat, 99) * 1000:.1f} ms "
                f"({time.perf_counter() - t0:.0f} s)")
    finally:
        lag.stop()
        fs.stop()
        empty_bucket(plain_client(settings), settings.s3_bucket)

    figures += _phase_figures(
        "office", office_lat, "<= 10",
        f"{opts.busy} calls held, {opts.office_rate:g} new call/s for {opts.office_s:.0f} s: "
        f"{len(office_lat)} of {len(office)} recorded; stand-in loop lag p99 {office_lag:.1f} ms")
    figures += _phase_figures(
        f"office + {opts.upload_mb} MB uploads", uploads_lat, "<= 10",
        f"same load while the daemon's shipper uploaded {uploaded} x {opts.upload_mb} MB: "
        f"{len(uploads_lat)} of {len(during)} recorded; stand-in loop lag p99 {uploads_lag:.1f} ms")
    figures += _phase_figures(
        f"{opts.burst_rate:.0f} calls/s", burst_lat, "<= 50",
        f"offered {opts.burst_rate:.0f} new calls/s for {opts.burst_s:.0f} s, the stand-in answered {achieved:.0f}/s; "
        f"{len(burst_lat)} of {len(burst)} recorded; stand-in loop lag p99 {burst_lag:.1f} ms")
    return figures
