"""Faults on demand and transfers: what the daemon must survive, as the captures show it."""

from __future__ import annotations

import gevent

from tests.standin_fixtures import RawClient
from yangyang_rec.esl.frames import parse_event


def events_of(client: RawClient, wait: float = 0.3):
    client.read_until_eof(wait)
    frames, client.frames, client.pending[:] = client.pending + client.frames, [], []
    return [parse_event(f) for f in frames if f.content_type.startswith("text/event")], frames


def answered(call):
    while not call.answered:
        gevent.sleep(0.01)


def test_restart_tears_down_calls_then_comes_back_empty_with_a_new_core(standin, raw_client, tmp_path):
    raw_client.command("event plain ALL")
    call = standin.place_call(ring_s=0.2, talk_s=600)
    answered(call)
    assert raw_client.command(f"api uuid_record {call.a_uuid} start {tmp_path}/r.wav").text == "+OK Success\n"
    old_core, port = standin.core_uuid, standin.port
    standin.restart(down_s=0.1)
    events, frames = events_of(raw_client, 2)
    assert raw_client.eof
    assert frames[-1].content_type == "text/disconnect-notice"
    assert frames[-1].body == b"The system is being shut down.\n"
    names = [e.name for e in events]
    assert names.index("SHUTDOWN") < names.index("CHANNEL_HANGUP")
    hangups = {e.get("Unique-ID"): e.get("Hangup-Cause") for e in events if e.name == "CHANNEL_HANGUP_COMPLETE"}
    assert hangups == {call.a_uuid: "SYSTEM_SHUTDOWN", call.b_uuid: "SYSTEM_SHUTDOWN"}
    stop = next(e for e in events if e.name == "RECORD_STOP")
    assert stop.get("Record-Completion-Cause") == "success-silence" and (tmp_path / "r.wav").exists()
    assert call.done.is_set()
    again = RawClient(port)
    again.login()
    assert again.command("api show channels as json").text == '{"row_count": 0}\n'
    assert standin.core_uuid != old_core
    again.close()


def test_duplicate_and_failing_record(standin, raw_client, tmp_path):
    raw_client.command("event plain CHANNEL_ANSWER")
    standin.duplicate_events("CHANNEL_ANSWER", times=1)
    standin.fail_uuid_record("2105")
    call = standin.place_call(line="2105", ring_s=0.2, talk_s=2)
    answered(call)
    reply = raw_client.command(f"api uuid_record {call.a_uuid} start {tmp_path}/x.wav")
    assert reply.text == "-ERR Cannot record session!\n"
    assert standin.wait_idle(5)
    events, _ = events_of(raw_client)
    assert [e.get("Unique-ID") for e in events] == [call.b_uuid, call.b_uuid, call.a_uuid, call.a_uuid]
    assert [line for _, line in standin.api_log] == [f"uuid_record {call.a_uuid} start {tmp_path}/x.wav"]


def test_blind_transfer_keeps_recording_on_a_leg_with_a_second_bridge(standin, raw_client, tmp_path):
    raw_client.command("event plain CHANNEL_BRIDGE RECORD_START RECORD_STOP CHANNEL_HANGUP_COMPLETE")
    call = standin.place_call(ring_s=0.2, talk_s=5, transfer_to="2102", transfer_kind="aleg")
    answered(call)
    raw_client.command(f"api uuid_record {call.a_uuid} start {tmp_path}/t.wav")
    assert standin.wait_idle(5)
    events, _ = events_of(raw_client)
    bridges = [(e.get("Unique-ID"), e.get("Other-Leg-Unique-ID")) for e in events if e.name == "CHANNEL_BRIDGE"]
    assert bridges == [(call.a_uuid, call.b_uuid), (call.a_uuid, call.c_uuid)]
    stops = [e for e in events if e.name == "RECORD_STOP"]
    assert [e.get("Unique-ID") for e in stops] == [call.a_uuid]
    names = [(e.name, e.get("Unique-ID")) for e in events]
    assert names.index(("RECORD_STOP", call.a_uuid)) < names.index(("CHANNEL_HANGUP_COMPLETE", call.a_uuid))


def test_bleg_transfer_with_follow_moves_the_recording_to_the_staff_leg(standin, raw_client, tmp_path):
    raw_client.command("event plain RECORD_STOP MEDIA_BUG_START MEDIA_BUG_STOP")
    call = standin.place_call(ring_s=0.2, talk_s=5, transfer_to="2102", transfer_kind="bleg")
    answered(call)
    raw_client.command(f"api uuid_setvar {call.a_uuid} recording_follow_transfer true")
    raw_client.command(f"api uuid_record {call.a_uuid} start {tmp_path}/f.wav")
    assert standin.wait_idle(5)
    events, _ = events_of(raw_client)
    stops = [e for e in events if e.name == "RECORD_STOP"]
    assert [(e.get("Unique-ID"), e.get("Record-File-Path")) for e in stops] == [(call.b_uuid, f"{tmp_path}/f.wav")]
    assert ("MEDIA_BUG_START", call.b_uuid) in [(e.name, e.get("Unique-ID")) for e in events]
