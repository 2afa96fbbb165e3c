"""`yangyang-rec simulate`: the stand-in with an office mix of calls, faults on a schedule, or a replay."""

from __future__ import annotations

import json
import re
from pathlib import Path

import gevent

from yangyang_rec.standin.replay import replay
from yangyang_rec.standin.server import FreeSwitchStandIn
from yangyang_rec.standin.traffic import office_mix

FAULT = re.compile(r"(restart|duplicate|delay|stall|malformed|fail_record)(?::([\w.-]+))?@(\d+(?:\.\d+)?)\Z")


def parse_fault(text: str) -> tuple[str, str, float]:
    """`restart@30`, `stall:5@10` (5 s at call 10), `duplicate:CHANNEL_ANSWER@3`, `fail_record:2101@0`."""
    m = FAULT.match(text)
    if not m:
        raise ValueError(f"bad --fault {text!r}: write KIND[:ARG]@CALL_NUMBER, e.g. restart@30 or stall:5@10 "
                         "(kinds: restart, duplicate, delay, stall, malformed, fail_record)")
    return m.group(1), m.group(2) or "", float(m.group(3))


def apply_fault(fs: FreeSwitchStandIn, kind: str, arg: str) -> None:
    if kind == "restart":
        fs.restart(float(arg) if arg else 0.5)
    elif kind == "duplicate":
        fs.duplicate_events(arg or "CHANNEL_ANSWER")
    elif kind == "delay":
        fs.delay_events(float(arg or 2))
    elif kind == "stall":
        fs.stall(float(arg or 5))
    elif kind == "malformed":
        fs.send_malformed()
    elif kind == "fail_record":
        fs.fail_uuid_record(arg)


def _hold(fs: FreeSwitchStandIn, seconds: float) -> None:
    """Keep serving while clients are still connected (up to `seconds`): a client still working
    through its backlog would lose it if the switch closed the socket."""
    import time

    deadline = time.time() + seconds
    while fs.clients and time.time() < deadline:
        gevent.sleep(0.05)


def simulate(lines, calls: int, rate: float, time_scale: float, seed: int, port: int = 8021,
             password: str = "ClueCon", faults: list[str] = (), json_out: Path | None = None,
             replay_file: Path | None = None, wait_for_client_s: float = 0.0, hold_s: float = 0.0,
             out=print) -> list[dict]:
    fs = FreeSwitchStandIn(port=port, password=password, time_scale=time_scale).start()
    out(f"FreeSWITCH stand-in listening on 127.0.0.1:{fs.port} (password {password!r}, Core-UUID {fs.core_uuid})")
    try:
        if replay_file is not None:
            n = replay(fs, replay_file, wait_for_client_s or 30.0)
            out(f"replayed {n} events from {replay_file}")
            _hold(fs, max(hold_s, 0.5))
            return []
        if wait_for_client_s:
            for _ in range(int(wait_for_client_s * 20)):
                if any(c.fmt for c in fs.clients):
                    break
                gevent.sleep(0.05)
        schedule = sorted((parse_fault(f) for f in faults), key=lambda f: f[2])
        placed = []
        for n, spec in enumerate(office_mix(lines, calls, seed)):
            while schedule and schedule[0][2] <= n:
                kind, arg, _ = schedule.pop(0)
                out(f"fault: {kind} {arg}".rstrip())
                apply_fault(fs, kind, arg)
            placed.append(fs.place_call(**spec))
            gevent.sleep(1.0 / (rate * time_scale) if rate > 0 else 0)
        longest = max((s.get("ring_s", 0) + s.get("talk_s", 0) for s in office_mix(lines, calls, seed)), default=0)
        fs.wait_idle(timeout=longest / time_scale + 60)
        rows = [c.to_dict() for c in placed]
        for c in placed:
            state = "answered" if c.answered else ("busy" if c.busy else "abandoned")
            extra = f" transfer->{c.transfer_to} ({c.transfer_kind})" if c.transfer_to else ""
            out(f"{c.a_uuid} {c.kind:<8} line {c.line:<6} {state:<9} talk {c.talk_s:6.1f}s{extra}")
        answered = sum(1 for c in placed if c.answered)
        out(f"{len(placed)} calls placed, {answered} answered, {fs.seq} events sent")
        if json_out is not None:
            Path(json_out).write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
        _hold(fs, hold_s)
        return rows
    finally:
        fs.stop()
