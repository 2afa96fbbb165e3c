"""The office mix: deterministic per seed, and every event reaches greenswitch — in-process and via the CLI."""

from __future__ import annotations

import re
import socket
import sys
import time
from pathlib import Path

import gevent
import gevent.subprocess
import greenswitch
import pytest

from tests.standin_fixtures import CAPTURES, RawClient
from yangyang_rec.esl.frames import parse_event
from yangyang_rec.lines import load_plan
from yangyang_rec.standin.replay import transcript_events
from yangyang_rec.standin.traffic import office_mix

LINES = Path(__file__).resolve().parents[1] / "config" / "lines.yaml"


def test_office_mix_is_deterministic_and_realistic():
    plan = load_plan(LINES)
    mix = office_mix(plan, 200, seed=7)
    assert mix == office_mix(plan, 200, seed=7)
    assert mix != office_mix(plan, 200, seed=8)
    kinds = [m["kind"] for m in mix]
    assert kinds.count("inbound") > 120
    unanswered = sum(1 for m in mix if not m["answer"])
    assert 8 <= unanswered <= 40
    assert any(m.get("transfer_to") for m in mix) and any(m.get("dtmf") for m in mix)
    assert {m["line"] for m in mix} <= set(plan.by_extension)


def test_greenswitch_gets_every_event_of_200_calls(standin):
    standin.clock.scale = standin.time_scale = 400.0
    received = []
    conn = greenswitch.InboundESL(host="127.0.0.1", port=standin.port, password="ClueCon")
    conn.connect()
    conn.register_handle("*", lambda event: received.append(event.headers.get("Event-Name")))
    conn.send("event plain ALL")
    calls = standin.run_traffic(load_plan(LINES), calls=200, rate=20.0, seed=1)
    assert standin.wait_idle(30)
    deadline = time.time() + 10
    while len([n for n in received if n]) < standin.seq and time.time() < deadline:
        gevent.sleep(0.05)
    conn.stop()
    assert len(calls) == 200
    assert len([n for n in received if n]) == standin.seq


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_simulate_cli_200_calls_every_event_reaches_greenswitch(tmp_path):
    port = free_port()
    proc = gevent.subprocess.Popen(
        [sys.executable, "-m", "yangyang_rec", "simulate", "--lines", str(LINES), "--calls", "200", "--rate", "20",
         "--time-scale", "400", "--seed", "1", "--port", str(port), "--json", str(tmp_path / "calls.json"),
         "--wait-for-client", "20", "--hold", "60"],
        stdout=gevent.subprocess.PIPE, stderr=gevent.subprocess.PIPE, text=True)
    try:
        conn = None
        for _ in range(100):
            try:
                conn = greenswitch.InboundESL(host="127.0.0.1", port=port, password="ClueCon")
                conn.connect()
                break
            except (OSError, greenswitch.esl.NotConnectedError):
                gevent.sleep(0.1)
        received = []
        conn.register_handle("*", lambda event: received.append(event.headers.get("Event-Name")))
        conn.send("event plain ALL")
        out = []
        while not out or "events sent" not in out[-1]:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            out.append(line)
        sent = int(re.search(r"(\d+) events sent", out[-1]).group(1))
        deadline = time.time() + 60
        while len([n for n in received if n]) < sent and time.time() < deadline:
            gevent.sleep(0.05)
        conn.stop()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    assert out[-1].startswith("200 calls placed")
    assert len([n for n in received if n]) == sent
    assert (tmp_path / "calls.json").read_text().count('"a_uuid"') == 200


SHIPPED = sorted(p.name for p in CAPTURES.glob("*.txt")
                 if not p.name.endswith((".dialog.txt", ".sent.txt")) and not p.name.startswith("sipp-")
                 and b"Content-Type: text/event-" in p.read_bytes())


@pytest.mark.parametrize("capture", SHIPPED)
def test_replayed_capture_gives_the_same_event_sequence(standin, capture):
    name = CAPTURES / capture
    fmt = "json" if b"Content-Type: text/event-json" in name.read_bytes() else "plain"
    client = RawClient(standin.port)
    client.login()
    client.command(f"event {fmt} ALL")
    from yangyang_rec.standin.replay import replay

    n = replay(standin, name, wait_for_client_s=1)
    deadline = time.time() + 5
    while len(client.frames) + len(client.pending) < n and time.time() < deadline:
        client._fill(0.2)
    got = [parse_event(f) for f in client.pending + client.frames if f.content_type.startswith("text/event")]
    want = transcript_events(name)
    got = [e for e in got if e.get("Core-UUID") != standin.core_uuid]  # the stand-in's own API events
    assert [(e.name, e.get("Unique-ID"), e.get("Event-Sequence")) for e in got] == \
        [(e.name, e.get("Unique-ID"), e.get("Event-Sequence")) for e in want]
    assert n == len(want) == len(got)
    original = name.read_bytes()
    assert all(e.frame_bytes in original for e in want)
