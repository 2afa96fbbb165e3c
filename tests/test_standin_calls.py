"""Calls on the stand-in against the recorded bridged calls: header names and order per event type,
event order on both legs, recordings as real WAV files, and greenswitch receiving every event."""

from __future__ import annotations

import wave

import gevent
import greenswitch
import pytest

from tests.standin_fixtures import CAPTURES, RawClient
from yangyang_rec.esl.frames import parse_event
from yangyang_rec.standin.templates import capture_events, plain_header_list


def captured_call(name: str):
    import json

    events = capture_events(CAPTURES / f"{name}.txt")
    legs = list(json.loads((CAPTURES / f"_summary-{name}.json").read_text())["results"]["legs"])
    return [e for e in events if e.get("Unique-ID") in legs], legs


def header_names(items) -> list[str]:
    return [k for k, _ in items if not k.startswith("variable_")]


def record_like_the_capture(client: RawClient, call, path):
    """What the capture client did on the A-leg CHANNEL_ANSWER."""
    events = []
    while True:
        frame = client.next_frame(10)
        if not frame.content_type.startswith("text/event"):
            continue
        event = parse_event(frame)
        events.append((frame, event))
        if event.name == "CHANNEL_ANSWER" and event.get("Unique-ID") == call.a_uuid:
            a = call.a_uuid
            client.send(f"api uuid_setvar {a} RECORD_STEREO true")
            client.send(f"api uuid_record {a} start {path}")
            client.send(f"api uuid_broadcast {a} tone_stream://%(500,500,440);loops=3 aleg")
        if event.name == "CHANNEL_STATE" and event.get("Unique-ID") == call.a_uuid and \
                event.get("Channel-State") == "CS_DESTROY":
            return events


def run_recorded_call(standin, tmp_path, **kw):
    client = RawClient(standin.port)
    client.login()
    client.command("event plain ALL")
    call = standin.place_call(**kw)
    events = record_like_the_capture(client, call, tmp_path / "rec" / "call.wav")
    client.close()
    return call, events


def leg_sequence(events, legs):
    seq = []
    for e in events:
        uid = e.get("Unique-ID")
        if uid in legs and e.name not in ("API",):
            name = e.name
            if name in ("CHANNEL_STATE",):
                name += f"[{e.get('Channel-State')}]"
            seq.append((legs.index(uid), name))
    return seq


@pytest.mark.parametrize("capture,kw", [
    ("bridged-inbound-call-plain", {}),
    ("bridged-staff-hangs-up-plain", {"hangup_by": "staff"}),
])
def test_recorded_bridged_call_has_the_captured_event_order_and_headers(standin, tmp_path, capture, kw):
    call, got = run_recorded_call(standin, tmp_path, ring_s=1.0, talk_s=6.0, caller_name="홍길동", **kw)
    want, legs = captured_call(capture)
    got_events = [e for _, e in got]
    got_seq = leg_sequence(got_events, [call.a_uuid, call.b_uuid])
    want_seq = leg_sequence(want, legs)
    # the playback's PLAYBACK_STOP rides on the talk time, so compare the call's own events in order...
    mobile = {"CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "PLAYBACK_START", "PLAYBACK_STOP", "PRIVATE_COMMAND"}
    assert [s for s in got_seq if s[1] not in mobile] == [s for s in want_seq if s[1] not in mobile]
    # ...and the same multiset overall
    assert sorted(got_seq) == sorted(want_seq)
    # header names and order of every event, the n-th of its type on its leg against the n-th captured
    want_by: dict[tuple, list] = {}
    for e in want:
        want_by.setdefault((legs.index(e.get("Unique-ID")), e.name), []).append(header_names(e.items))
    seen: dict[tuple, int] = {}
    checked = 0
    for frame, e in got:
        uid = e.get("Unique-ID")
        if uid not in (call.a_uuid, call.b_uuid) or e.name == "API":
            continue
        items, _ = plain_header_list(frame.body)
        key = ((call.a_uuid, call.b_uuid).index(uid), e.name)
        n = seen[key] = seen.get(key, -1) + 1
        assert header_names(items) == want_by[key][n], (key, n)
        checked += 1
    assert checked == len(want)


def test_values_are_the_calls_own_url_encoded(standin, tmp_path):
    call, got = run_recorded_call(standin, tmp_path, outside="0331234567", line="2301", caller_name="김민준",
                                  ring_s=0.5, talk_s=2.0)
    a_answer = next(f for f, e in got if e.name == "CHANNEL_ANSWER" and e.get("Unique-ID") == call.a_uuid)
    assert b"Caller-Caller-ID-Name: %EA%B9%80%EB%AF%BC%EC%A4%80\n" in a_answer.body
    assert b"Channel-Name: sofia/internal/0331234567%40127.0.0.1%3A5071\n" in a_answer.body
    assert b"Caller-Destination-Number: 2301\n" in a_answer.body
    events = [e for _, e in got]
    bridge = [e for e in events if e.name == "CHANNEL_BRIDGE"]
    assert [(e.get("Unique-ID"), e.get("Other-Leg-Unique-ID")) for e in bridge] == [(call.a_uuid, call.b_uuid)]
    update = next(e for e in events if e.name == "CALL_UPDATE" and e.get("Unique-ID") == call.a_uuid)
    assert update.get("variable_bridge_uuid") == call.b_uuid
    assert "variable_bridge_uuid" not in bridge[0].headers
    stop = next(e for e in events if e.name == "RECORD_STOP")
    assert stop.get("Record-Completion-Cause") == "success-silence"
    assert stop.get("variable_RECORD_STEREO") == "true"
    names = [(e.name, e.get("Unique-ID")) for e in events]
    assert names.index(("RECORD_STOP", call.a_uuid)) < names.index(("CHANNEL_HANGUP_COMPLETE", call.a_uuid))


def test_recording_is_a_real_wav_of_the_call_time_despite_time_scale(standin, tmp_path):
    call, _ = run_recorded_call(standin, tmp_path, ring_s=0.5, talk_s=5.0)
    with wave.open(str(tmp_path / "rec" / "call.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        assert 4.6 <= w.getnframes() / 8000 <= 5.6
    assert call.recordings == [str(tmp_path / "rec" / "call.wav")]


def test_mono_recording_limit_and_min_sec(standin, raw_client, tmp_path):
    raw_client.command("event plain RECORD_START RECORD_STOP")
    call = standin.place_call(ring_s=0.2, talk_s=30.0)
    while not call.answered:
        gevent.sleep(0.01)
    a = call.a_uuid
    assert raw_client.command(f"api uuid_getvar {a} RECORD_STEREO").text == "_undef_"
    assert raw_client.command(f"api uuid_record {a} start {tmp_path}/mono.wav 2").text == "+OK Success\n"
    assert raw_client.command(f"api uuid_setvar {a} record_min_sec 3").text == "+OK\n"
    assert raw_client.command(f"api uuid_record {a} start {tmp_path}/short.wav").text == "+OK Success\n"
    assert raw_client.command(f"api uuid_record {a} start /proc/no-such-dir/x.wav").text == \
        "-ERR Cannot record session!\n"
    gevent.sleep(1.0 / standin.time_scale)
    assert raw_client.command(f"api uuid_record {a} stop {tmp_path}/short.wav").text == "+OK Success\n"
    gevent.sleep(2.5 / standin.time_scale)
    raw_client.read_until_eof(0.2)
    stops = {}
    for frame in raw_client.pending + raw_client.frames:
        e = parse_event(frame)
        if e.name == "RECORD_STOP":
            stops[e.get("Record-File-Path")] = e
    assert stops[f"{tmp_path}/short.wav"].get("Record-Completion-Cause") == "input-too-short"
    assert stops[f"{tmp_path}/short.wav"].get("variable_RECORD_DISCARDED") == "true"
    assert not (tmp_path / "short.wav").exists()
    assert stops[f"{tmp_path}/mono.wav"].get("Record-Completion-Cause") == "success-maxtime"
    with wave.open(str(tmp_path / "mono.wav")) as w:
        assert w.getnchannels() == 1
    assert raw_client.command(f"api uuid_kill {a}").text == "+OK\n"
    assert standin.wait_idle(5)
    assert raw_client.command(f"api uuid_exists {a}").text == "false"


def test_abandoned_and_busy_calls_never_answer(standin, raw_client):
    raw_client.command("event plain CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE")
    abandoned = standin.place_call(answer=False, ring_s=1.0)
    busy = standin.place_call(busy=True)
    assert standin.wait_idle(10)
    raw_client.read_until_eof(0.3)
    events = [parse_event(f) for f in raw_client.pending + raw_client.frames]
    assert not [e for e in events if e.name == "CHANNEL_ANSWER"]
    causes = {e.get("Unique-ID"): e.get("Hangup-Cause") for e in events}
    assert causes == {abandoned.a_uuid: "ORIGINATOR_CANCEL", abandoned.b_uuid: "ORIGINATOR_CANCEL",
                      busy.a_uuid: "USER_BUSY", busy.b_uuid: "USER_BUSY"}
    assert not abandoned.answered and not busy.answered


def test_greenswitch_receives_every_event(standin):
    received = []
    conn = greenswitch.InboundESL(host="127.0.0.1", port=standin.port, password="ClueCon")
    conn.connect()
    conn.register_handle("*", lambda event: received.append(event.headers.get("Event-Name")))
    conn.send("event plain ALL")
    sent = []
    original = standin.emit

    def counting(event):
        sent.append(event.name)
        original(event)

    standin.emit = counting
    for kind in ("inbound", "outbound", "internal"):
        standin.place_call(kind=kind, ring_s=0.3, talk_s=1.0, dtmf="12" if kind == "inbound" else "")
    assert standin.wait_idle(10)
    gevent.sleep(0.3)
    conn.stop()
    assert len(sent) > 100
    assert [name for name in received if name] == sent
