"""The test bench around the daemon: a stand-in that timestamps what it writes, the daemon as a real
process configured only through YYREC_* variables, and the answer -> uuid_record latencies.

Latency is measured with the stand-in's own clock at both ends: when it emits the A leg's
CHANNEL_ANSWER (the event the daemon records on) and when it receives `uuid_record ... start`
for that call. Everything between is the daemon's: reading, deciding, indexing, sending. The
stand-in shares this process with the bench, so its own event-loop lag is measured too and
reported beside the latencies: a slow harness must not pass for a slow daemon unnoticed.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import gevent

from yangyang_rec.bench.figures import percentile
from yangyang_rec.lines import Plan
from yangyang_rec.local_processes import stop
from yangyang_rec.settings import Settings
from yangyang_rec.standin import FreeSwitchStandIn


class TimedStandIn(FreeSwitchStandIn):
    """The stand-in, plus the wall time at which each CHANNEL_ANSWER was emitted, and event counts."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.answered: dict[str, float] = {}
        self.emitted: Counter[str] = Counter()

    def emit(self, event) -> None:
        if event.name == "CHANNEL_ANSWER":
            self.answered.setdefault(event.get("Unique-ID"), time.time())
        self.emitted[event.name] += 1
        super().emit(event)


@dataclass
class LoopLag:
    """How late a 5 ms sleep wakes up in this process: the stand-in's own scheduling delay."""

    samples: list[float] = field(default_factory=list)
    greenlet: gevent.Greenlet | None = None

    def start(self) -> LoopLag:
        self.greenlet = gevent.spawn(self._run)
        return self

    def _run(self) -> None:
        while True:
            before = time.perf_counter()
            gevent.sleep(0.005)
            self.samples.append(max(0.0, time.perf_counter() - before - 0.005))

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill()

    def p99_ms(self, since: int = 0) -> float:
        return percentile(self.samples[since:], 99) * 1000


def record_latencies(fs: TimedStandIn, calls) -> list[float]:
    """Seconds from each call's A-leg CHANNEL_ANSWER to the first `uuid_record <leg> start` for it."""
    leg_to_a = {}
    for call in calls:
        for leg in (call.a_uuid, call.b_uuid, call.c_uuid):
            if leg:
                leg_to_a[leg] = call.a_uuid
    first_record: dict[str, float] = {}
    for at, command in list(fs.api_log):
        parts = command.split()
        if len(parts) >= 3 and parts[0] == "uuid_record" and parts[2] == "start":
            a_uuid = leg_to_a.get(parts[1])
            if a_uuid and a_uuid not in first_record:
                first_record[a_uuid] = at
    out = []
    for a_uuid, at in first_record.items():
        answered = fs.answered.get(a_uuid)
        if answered is not None:
            out.append(max(0.0, at - answered))
    return out


def full_lines(plan: Plan) -> list[str]:
    """Extensions whose inbound calls are recorded in full: every call placed on them must be recorded."""
    return sorted(ext for ext, line in plan.by_extension.items() if line.mode == "full" and line.records("inbound"))


def daemon_env(settings: Settings, esl_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YYREC_", "AWS_"))}
    env.update(
        YYREC_SETTINGS_FILE=os.devnull,
        YYREC_ESL_HOST="127.0.0.1", YYREC_ESL_PORT=str(esl_port), YYREC_ESL_PASSWORD="ClueCon",
        YYREC_NODE="bench", YYREC_LINES_FILE=str(settings.lines_file), YYREC_SPOOL_DIR=str(settings.spool_dir),
        YYREC_DATABASE_URL=settings.database_url,
        YYREC_NOTICE_FILE=str(settings.notice_file),
        YYREC_S3_ENDPOINT_URL=settings.s3_endpoint_url, YYREC_S3_BUCKET=settings.s3_bucket,
        YYREC_S3_REGION=settings.s3_region, YYREC_S3_ADDRESSING_STYLE=settings.s3_addressing_style,
        YYREC_S3_ACCESS_KEY_ID=settings.s3_access_key_id, YYREC_S3_SECRET_ACCESS_KEY=settings.s3_secret_access_key,
        YYREC_MULTIPART_THRESHOLD_MB=str(settings.multipart_threshold_mb),
        YYREC_LOG_LEVEL="warning", YYREC_LOG_FORMAT="json",
    )
    return env


class Caller:
    """Places calls on the stand-in: wall-clock ring and talk times turned into the stand-in's virtual ones."""

    def __init__(self, fs: TimedStandIn, all_lines: list[str], recorded_lines: list[str], seed: int = 11):
        self.fs, self.all_lines, self.recorded_lines = fs, all_lines, recorded_lines
        self.rng = random.Random(seed)
        self.scale = fs.time_scale

    def place(self, line: str, ring_wall: float, talk_wall: float):
        return self.fs.place_call(
            kind="inbound", line=line, outside=f"010{self.rng.randint(10_000_000, 99_999_999)}",
            caller_name="홍길동", ring_s=ring_wall * self.scale, talk_s=talk_wall * self.scale,
        )

    def at_rate(self, rate: float, count: int, ring_wall: float, talk_wall: float) -> list:
        """`count` new calls on recorded lines at `rate` per second (paced on the wall clock)."""
        placed = []
        started = time.perf_counter()
        for i in range(count):
            line = self.recorded_lines[i % len(self.recorded_lines)]
            placed.append(self.place(line, ring_wall, talk_wall))
            wait = started + (i + 1) / rate - time.perf_counter()
            gevent.sleep(max(0.0, wait))
        return placed


class Daemon:
    """The daemon as its own process (`python -m yangyang_rec.bench.daemon_process`), connected to `fs`."""

    def __init__(self, settings: Settings, fs: FreeSwitchStandIn, log_path: Path, ship: bool = True):
        self.settings, self.fs, self.log_path, self.ship = settings, fs, log_path, ship
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> Daemon:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in __exit__
        argv = [sys.executable, "-m", "yangyang_rec.bench.daemon_process"] + ([] if self.ship else ["--no-ship"])
        self.proc = subprocess.Popen(argv, env=daemon_env(self.settings, self.fs.port),
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {self.proc.returncode}; see {self.log_path}")
            if any(c.authed and c.fmt for c in self.fs.clients):
                gevent.sleep(0.5)  # the reconcile after connecting (show channels) settles
                return self
            gevent.sleep(0.05)
        raise TimeoutError(f"the daemon did not connect within 30 s; see {self.log_path}")

    def __exit__(self, *exc) -> None:
        stop(self.proc)
        self._log.close()
