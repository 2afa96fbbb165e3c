"""The connection supervisor over real TCP, against a server that replays FreeSWITCH's captured bytes."""

import socket
from pathlib import Path

import gevent
import gevent.event
import gevent.server
import pytest
from greenswitch.esl import NotConnectedError

from yangyang_rec.esl.connection import Backoff, CommandTimeout, EslConnection, EslSupervisor, EslUnavailable
from yangyang_rec.esl.frames import FrameReader

CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "esl-captures"
AUTH_REQUEST = b"Content-Type: auth/request\n\n"
OK_ACCEPTED = b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
EVENTS_OK = b"Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n"


def event_bytes(name: str) -> bytes:
    """The event frames (and closing notice) of a capture, exactly as FreeSWITCH sent them."""
    raw = (CAPTURES / f"{name}.txt").read_bytes()
    out = []
    for frame in FrameReader().feed(raw):
        if frame.content_type in ("text/event-plain", "text/disconnect-notice"):
            head = "".join(f"{k}: {v}\n" for k, v in frame.headers.items()).encode()
            out.append(head + b"\n" + frame.body)
    return b"".join(out)


class Replay:
    """A loopback TCP server: greets, accepts auth and subscription, then runs `script(sock, reader)`."""

    def __init__(self, script):
        self.script = script
        self.sent: list[bytes] = []
        self.connections = 0
        self.server = gevent.server.StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.port = self.server.server_port

    def _handle(self, sock, _addr):
        self.connections += 1
        sock.sendall(AUTH_REQUEST)
        buf = b""
        for reply in (OK_ACCEPTED, EVENTS_OK):
            while b"\n\n" not in buf:
                data = sock.recv(4096)
                if not data:
                    return
                buf += data
            command, _, buf = buf.partition(b"\n\n")
            self.sent.append(command)
            sock.sendall(reply)
        self.script(self, sock)

    def stop(self):
        self.server.stop(timeout=0.1)


def run_supervisor(replay, received, stop, on_connected=lambda s: None, lost=None):
    sup = EslSupervisor(
        "127.0.0.1",
        replay.port,
        "ClueCon",
        ["CHANNEL_ANSWER", "RECORD_STOP"],
        on_event=received.append,
        on_connected=on_connected,
        on_lost=(lost.append if lost is not None else lambda r: None),
        command_timeout=0.5,
        backoff=Backoff(base=0.05, cap=0.2),
    )
    return sup, gevent.spawn(sup.run, stop)


def test_events_sent_before_eof_are_all_handled_then_it_reconnects():
    restart = event_bytes("restart-mid-call-plain")

    def script(replay, sock):
        if replay.connections == 1:
            sock.sendall(restart)  # ends with the disconnect notice
            sock.close()
        else:
            gevent.sleep(5)

    replay = Replay(script)
    received, lost, stop = [], [], gevent.event.Event()
    sup, g = run_supervisor(replay, received, stop, lost=lost)
    with gevent.Timeout(5):
        while replay.connections < 2 or sup.current is None:
            gevent.sleep(0.02)
    names = [e.name for e in received]
    assert len(names) == restart.count(b"Content-Type: text/event-plain")
    assert "SHUTDOWN" in names and "RECORD_STOP" in names and names[-1] == "MODULE_UNLOAD"
    assert lost and "shut down" in lost[0]
    assert replay.sent[0] == b"auth ClueCon"
    assert replay.sent[1] == b"event plain CHANNEL_ANSWER RECORD_STOP"
    stop.set()
    g.join(timeout=2)
    assert g.dead
    replay.stop()


def test_eof_inside_a_body_and_invalid_utf8_do_not_hang_or_crash():
    def script(replay, sock):
        if replay.connections == 1:
            body = b"Event-Name: CHANNEL_ANSWER\nCaller-Caller-ID-Name: \xff\xfe%ZZ\n\n"
            sock.sendall(b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body)
            sock.sendall(b"Content-Length: 500\nContent-Type: text/event-plain\n\nEvent-Na")
            sock.close()
        else:
            gevent.sleep(5)

    replay = Replay(script)
    received, stop = [], gevent.event.Event()
    sup, g = run_supervisor(replay, received, stop)
    with gevent.Timeout(5):
        while replay.connections < 2:
            gevent.sleep(0.02)
    assert [e.name for e in received] == ["CHANNEL_ANSWER"]
    assert "\ufffd" in received[0].get("Caller-Caller-ID-Name")
    stop.set()
    g.join(timeout=2)
    replay.stop()


def test_command_without_reply_times_out_and_breaks_the_connection():
    def script(replay, sock):
        gevent.sleep(3)  # reads nothing more, answers nothing

    replay = Replay(script)
    conn = EslConnection("127.0.0.1", replay.port, "ClueCon", on_event=lambda e: None, command_timeout=0.3)
    conn.connect()
    conn.subscribe(["CHANNEL_ANSWER"])
    with pytest.raises(CommandTimeout):
        conn.api("show channels as json")
    assert conn.closed.wait(2)
    with pytest.raises(NotConnectedError):
        conn.api("status")
    replay.stop()


def test_command_with_a_line_break_is_never_sent():
    def script(replay, sock):
        gevent.sleep(3)

    replay = Replay(script)
    conn = EslConnection("127.0.0.1", replay.port, "ClueCon", on_event=lambda e: None, command_timeout=0.3)
    conn.connect()
    with pytest.raises(ValueError):
        conn.api("uuid_kill x\n\napi fsctl shutdown")
    conn.close()
    replay.stop()


def test_nothing_listening_is_retried_with_backoff_then_connects():
    stop = gevent.event.Event()
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    sup = EslSupervisor(
        "127.0.0.1",
        port,
        "ClueCon",
        ["CHANNEL_ANSWER"],
        on_event=lambda e: None,
        command_timeout=0.5,
        backoff=Backoff(base=0.05, cap=0.1),
    )
    g = gevent.spawn(sup.run, stop)
    gevent.sleep(0.4)
    assert sup.current is None
    with pytest.raises(EslUnavailable):
        sup.api("status")

    def script(replay, sock):
        gevent.sleep(5)

    replay = Replay.__new__(Replay)
    replay.script, replay.sent, replay.connections = script, [], 0
    server = gevent.server.StreamServer(("127.0.0.1", port), replay._handle)
    server.start()
    assert sup.connected_event.wait(3)
    stop.set()
    g.join(timeout=2)
    assert g.dead
    server.stop(timeout=0.1)


def test_backoff_is_capped_and_jittered():
    b = Backoff(base=0.5, cap=30)
    delays = [b.delay(n) for n in range(1, 20)]
    assert all(0 < d <= 30 for d in delays)
    assert 0.25 <= delays[0] <= 0.5 and delays[-1] >= 15


def test_a_long_outage_is_warned_about_periodically_not_once(monkeypatch):
    """Nothing listens: the first failure and then one 'still down' a period are warnings; the rest debug."""
    import io
    import json
    import socket

    import gevent.event

    from yangyang_rec.esl import connection
    from yangyang_rec.logs import configure_logging

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setattr(connection, "STILL_DOWN_EVERY_S", 0.3)
    sup = connection.EslSupervisor(
        "127.0.0.1", port, "ClueCon", ("CHANNEL_ANSWER",), on_event=lambda e: None,
        backoff=connection.Backoff(base=0.02, cap=0.05),
    )
    stop = gevent.event.Event()
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    runner = gevent.spawn(sup.run, stop)
    gevent.sleep(1.0)
    stop.set()
    runner.join(timeout=2)
    logs = [json.loads(line) for line in out.getvalue().splitlines()]
    warnings = [e["event"] for e in logs if e["level"] == "warning"]
    assert warnings[0] == "esl.retrying"
    assert warnings.count("esl.retrying") == 1
    assert 2 <= warnings.count("esl.still_down") <= 4  # ~1 s of outage, one a 0.3 s period
    assert any(e["level"] == "debug" and e["event"] == "esl.retrying" for e in logs)
