"""The stand-in's event-socket protocol, byte for byte against the real FreeSWITCH transcripts."""

from __future__ import annotations

import re

import pytest

from tests.standin_fixtures import CAPTURES, RawClient

MARK = re.compile(rb"^#### (SENT|RECV|EOF)[^\n]*\n", re.M)


def dialog(name: str) -> list[tuple[str, bytes]]:
    """(direction, bytes) chunks of NAME.dialog.txt, logger notes removed."""
    text = (CAPTURES / f"{name}.dialog.txt").read_bytes()
    marks = list(MARK.finditer(text))
    out = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        chunk = text[m.end():end]
        if b"#### (chunk did not end with newline" in chunk:
            chunk = chunk.split(b"\n#### (chunk did not end")[0]
        out.append((m.group(1).decode(), chunk))
    return out


def exchange(port: int, name: str, skip=()) -> list[tuple[bytes, bytes]]:
    """Send what the capture client sent; pair what the stand-in answered with what FreeSWITCH did."""
    client = RawClient(port)
    pairs = []
    chunks = dialog(name)
    expected = b"".join(c for d, c in chunks[:1] if d == "RECV")
    got = bytes(_read(client, len(expected)))
    pairs.append((expected, got))
    i = 1
    while i < len(chunks):
        direction, data = chunks[i]
        if direction == "SENT":
            client.sock.sendall(data)
            want = b""
            j = i + 1
            while j < len(chunks) and chunks[j][0] == "RECV":
                want += chunks[j][1]
                j += 1
            got = _read(client, len(want))
            if not any(s in data for s in skip):
                pairs.append((want, got))
            i = j
        elif direction == "EOF":
            client.read_until_eof(2)
            pairs.append((b"EOF", b"EOF" if client.eof else b"open"))
            i += 1
        else:
            i += 1
    client.close()
    return pairs


def _read(client: RawClient, n: int) -> bytes:
    start = len(client.raw)
    while len(client.raw) - start < n and client._fill(2.0):
        pass
    return bytes(client.raw[start:start + n])


@pytest.mark.parametrize("name", ["auth-greeting-and-ok", "auth-wrong-password", "command-before-auth",
                                  "command-replies"])
def test_session_is_byte_identical_to_freeswitch(standin, name):
    for want, got in exchange(standin.port, name):
        assert got == want


def test_command_before_auth_keeps_the_socket_open(standin):
    client = RawClient(standin.port)
    assert client.next_frame().content_type == "auth/request"
    assert client.command("api status").headers["Reply-Text"] == "-ERR command not found"
    assert client.command("auth ClueCon").headers["Reply-Text"] == "+OK accepted"
    client.close()


def test_api_replies_and_errors_match_the_capture(standin):
    """Exact bytes for every reply except `status` (uptime) — that one is checked for shape."""
    pairs = exchange(standin.port, "api-replies-and-errors", skip=(b"api status",))
    assert len(pairs) == 16  # greeting, auth, 14 api commands
    for want, got in pairs:
        assert got == want
    client = RawClient(standin.port)
    client.login()
    body = client.command("api status").text
    assert re.match(r"UP 0 years, 0 days, \d+ hours, \d+ minutes, \d+ seconds, \d+ milliseconds, \d+ microseconds\n"
                    r"FreeSWITCH \(Version 1\.10\.12-release  64bit\) is ready\n\d+ session\(s\) since startup\n", body)


def test_bgapi_replies_with_job_uuid_then_background_job(raw_client):
    reply = raw_client.command("bgapi uuid_kill 00000000-0000-0000-0000-000000000000")
    job = reply.headers["Job-UUID"]
    assert reply.headers["Reply-Text"] == f"+OK Job-UUID: {job}"
    assert raw_client.command("event plain BACKGROUND_JOB").headers["Reply-Text"] == "+OK event listener enabled plain"
    reply = raw_client.command("bgapi status", {"Job-UUID": "11111111-2222-3333-4444-555555555555"})
    assert reply.headers["Job-UUID"] == "11111111-2222-3333-4444-555555555555"
    frame = raw_client.pending.pop(0) if raw_client.pending else raw_client.next_frame()
    from yangyang_rec.esl.frames import parse_event

    event = parse_event(frame)
    assert event.name == "BACKGROUND_JOB"
    assert event.get("Job-UUID") == "11111111-2222-3333-4444-555555555555"
    assert event.get("Job-Command") == "status"
    assert event.body.startswith("UP 0 years")


def test_clients_have_their_own_subscriptions_and_filters(standin):
    a, b = RawClient(standin.port), RawClient(standin.port)
    a.login()
    b.login()
    a.command("event plain CHANNEL_ANSWER")
    b.command("event json ALL")
    b.command("filter Event-Name CHANNEL_HANGUP_COMPLETE")
    call = standin.place_call(ring_s=0.2, talk_s=0.4)
    assert standin.wait_idle(10)
    a.read_until_eof(0.5)
    b.read_until_eof(0.5)
    from yangyang_rec.esl.frames import parse_event

    a_events = [parse_event(f) for f in a.frames + a.pending]
    b_events = [parse_event(f) for f in b.frames + b.pending]
    assert [e.name for e in a_events] == ["CHANNEL_ANSWER", "CHANNEL_ANSWER"]
    assert {e.get("Unique-ID") for e in b_events} == {call.a_uuid, call.b_uuid}
    assert all(e.name == "CHANNEL_HANGUP_COMPLETE" for e in b_events) and len(b_events) == 2
    assert all(f.content_type == "text/event-json" for f in b.frames)


def test_exit_says_goodbye_and_closes(raw_client):
    assert raw_client.command("exit").headers["Reply-Text"] == "+OK bye"
    notice = raw_client.next_frame()
    assert notice.content_type == "text/disconnect-notice"
    assert notice.body == b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
    raw_client.read_until_eof(2)
    assert raw_client.eof
