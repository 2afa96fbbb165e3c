"""The pure call state machine, fed with the real FreeSWITCH captures and with hostile events."""

import datetime as dt
from pathlib import Path

import pytest

from yangyang_rec.calls import (
    Adopted,
    CallMachine,
    CreateRow,
    Finalize,
    Ignore,
    NoteTransfer,
    PlayNotice,
    Reject,
    StartRecording,
    final_state,
    notice_legs,
    recording_path,
)
from yangyang_rec.esl.frames import Event, FrameReader, parse_event
from yangyang_rec.lines import Department, Line, Plan

CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "esl-captures"
SPOOL = "/var/spool/yangyang-rec"
NOTICE = "/usr/share/yangyang-rec/notice-ko.wav"
A_INBOUND = "e899193f-2404-4ff8-acda-3c5f71ec99c1"  # bridged-inbound-call-plain
B_INBOUND = "89d9a345-9a12-4c22-ad47-235e759b549c"


def make_plan(**modes: tuple[str, str, str]) -> Plan:
    defaults = {
        "2101": ("full", "both", "citizen"),
        "2102": ("full", "both", "citizen"),
        "2103": ("on_demand", "both", "citizen"),
        "2104": ("off", "both", "citizen"),
        "2105": ("full", "inbound", "citizen"),
    }
    defaults.update(modes)
    lines = tuple(
        Line(ext, "welfare", "주민복지실", mode, direction, NOTICE, leg)
        for ext, (mode, direction, leg) in defaults.items()
    )
    return Plan((Department("welfare", "주민복지실", lines),), {line.extension: line for line in lines})


def capture_events(name: str) -> list[Event]:
    frames = FrameReader().feed((CAPTURES / f"{name}.txt").read_bytes())
    return [parse_event(f) for f in frames if f.content_type == "text/event-plain"]


def at(event: Event) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(event.get("Event-Date-Timestamp")) / 1e6, dt.UTC).replace(
        tzinfo=None
    )


def run(machine: CallMachine, events: list[Event], capture_path: str = "", chosen: str = "") -> list:
    """Feed events as FreeSWITCH sent them; the capture's WAV path stands for the path the machine chose."""
    decisions = []
    for event in events:
        if chosen and capture_path:
            event = Event(
                {k: (chosen if v == capture_path else v) for k, v in event.headers.items()}, event.body
            )
        out = machine.feed(event, at(event))
        for d in out:
            if isinstance(d, StartRecording):
                chosen = d.path
        decisions.extend(out)
    return decisions


def kinds(decisions, *types):
    return [d for d in decisions if isinstance(d, types)]


def test_bridged_inbound_call_records_a_leg_once_then_finalizes_on_record_stop():
    machine = CallMachine(make_plan(), SPOOL)
    decisions = run(
        machine, capture_events("bridged-inbound-call-plain"), "/tmp/fscap/bridged-inbound-call-plain.wav"
    )
    acting = kinds(decisions, CreateRow, StartRecording, PlayNotice, Finalize)
    assert [type(d) for d in acting] == [CreateRow, StartRecording, PlayNotice, Finalize]
    row, start, notice, final = acting
    assert row.facts.call_uuid == A_INBOUND and row.facts.leg_uuid == A_INBOUND
    assert (row.facts.line, row.facts.direction, row.facts.department) == ("2101", "inbound", "welfare")
    assert row.facts.caller_number == "0335550100" and row.facts.caller_name == "홍길동"
    assert row.facts.recorded_on == dt.date(2026, 12, 3)
    assert start.leg_uuid == A_INBOUND and start.stereo
    assert start.path == f"{SPOOL}/2026/12/03/{A_INBOUND}.wav" == row.facts.recording_path
    assert (notice.leg_uuid, notice.file, notice.legs) == (A_INBOUND, NOTICE, "aleg")
    assert final.completion_cause == "success-silence" and final.hangup_cause == "NORMAL_CLEARING"
    assert final.record_ms == 5640
    assert machine.open == {}
    # The B leg answered first and was not taken for the conversation.
    assert any(isinstance(d, Ignore) and "staff leg" in d.reason for d in decisions)


def test_staff_hangs_up_first_still_one_recording_and_one_final():
    machine = CallMachine(make_plan(), SPOOL)
    decisions = run(
        machine, capture_events("bridged-staff-hangs-up-plain"), "/tmp/fscap/bridged-staff-hangs-up-plain.wav"
    )
    assert len(kinds(decisions, StartRecording)) == 1
    (final,) = kinds(decisions, Finalize)
    assert final.completion_cause.startswith("success")


def test_outbound_from_staff_is_outbound_by_line_not_by_call_direction():
    machine = CallMachine(make_plan(), SPOOL)
    decisions = run(
        machine, capture_events("outbound-from-staff-plain"), "/tmp/fscap/outbound-from-staff-plain.wav"
    )
    (row,) = kinds(decisions, CreateRow)
    assert (row.facts.line, row.facts.direction, row.facts.callee_number) == (
        "2101",
        "outbound",
        "0335550199",
    )
    (notice,) = kinds(decisions, PlayNotice)
    assert notice.legs == "bleg"  # the citizen is the B leg of a call the staff placed
    assert len(kinds(decisions, Finalize)) == 1


def test_outbound_call_on_an_inbound_only_line_is_not_recorded():
    machine = CallMachine(make_plan(**{"2101": ("full", "inbound", "citizen")}), SPOOL)
    decisions = run(machine, capture_events("outbound-from-staff-plain"))
    assert not kinds(decisions, CreateRow, StartRecording, Finalize)
    assert any(isinstance(d, Ignore) and "direction inbound" in d.reason for d in decisions)


@pytest.mark.parametrize("mode", ["off", "on_demand"])
def test_lines_not_in_full_mode_are_not_recorded(mode):
    machine = CallMachine(make_plan(**{"2101": (mode, "both", "citizen")}), SPOOL)
    decisions = run(machine, capture_events("bridged-inbound-call-plain"))
    assert not kinds(decisions, CreateRow, StartRecording, PlayNotice, Finalize)


def test_internal_call_between_two_lines_is_not_recorded():
    machine = CallMachine(make_plan(**{"0335550100": ("full", "both", "citizen")}), SPOOL)
    decisions = run(machine, capture_events("bridged-inbound-call-plain"))
    assert not kinds(decisions, CreateRow)
    assert any(isinstance(d, Ignore) and "internal" in d.reason for d in decisions)


def test_duplicated_and_resent_events_give_no_second_recording_or_final():
    events = capture_events("bridged-inbound-call-plain")
    doubled = [e for event in events for e in (event, event)]
    machine = CallMachine(make_plan(), SPOOL)
    decisions = run(machine, doubled + events, "/tmp/fscap/bridged-inbound-call-plain.wav")
    assert len(kinds(decisions, CreateRow)) == 1
    assert len(kinds(decisions, StartRecording)) == 1
    assert len(kinds(decisions, Finalize)) == 1


def test_blind_transfer_of_the_a_leg_keeps_one_recording_and_notes_the_new_line():
    machine = CallMachine(make_plan(), SPOOL)
    decisions = run(
        machine, capture_events("blind-transfer-aleg-plain"), "/tmp/fscap/blind-transfer-aleg-plain.wav"
    )
    assert len(kinds(decisions, StartRecording)) == 1
    notes = kinds(decisions, NoteTransfer)
    assert notes and notes[-1].lines_passed == ("2101", "2102")
    assert len(notes) == 1  # the new B leg's answer and the second bridge name the same line once
    (final,) = kinds(decisions, Finalize)
    assert final.completion_cause == "success-silence"


def test_bleg_transfer_without_follow_ends_the_recording_with_the_a_leg():
    machine = CallMachine(make_plan(), SPOOL)
    events = capture_events("blind-transfer-bleg-nofollow-plain")
    decisions = run(machine, events, "/tmp/fscap/blind-transfer-bleg-nofollow-plain.wav")
    assert len(kinds(decisions, StartRecording)) == 1
    (final,) = kinds(decisions, Finalize)
    assert final.call_uuid == kinds(decisions, CreateRow)[0].facts.call_uuid
    assert not kinds(decisions, CreateRow)[1:]  # 2101 -> 2102 afterwards is internal


def test_bleg_transfer_with_follow_moves_the_recording_and_matches_record_stop_by_path():
    machine = CallMachine(make_plan(), SPOOL)
    events = capture_events("blind-transfer-bleg-follow-plain")
    decisions = run(machine, events, "/tmp/fscap/blind-transfer-bleg-follow-plain.wav")
    (row,) = kinds(decisions, CreateRow)
    a_leg = row.facts.call_uuid
    notes = kinds(decisions, NoteTransfer)
    b_leg = notes[0].leg_uuid
    assert b_leg != a_leg
    assert notes[-1].lines_passed == ("2101", "2102")
    (final,) = kinds(decisions, Finalize)
    assert final.call_uuid == a_leg and final.completion_cause == "success-silence"
    # The A leg's CHANNEL_HANGUP_COMPLETE (no RECORD_STOP) came long before: it must not have finalized.
    hangup_a = next(
        i for i, e in enumerate(events) if e.name == "CHANNEL_HANGUP_COMPLETE" and e.get("Unique-ID") == a_leg
    )
    stop = next(i for i, e in enumerate(events) if e.name == "RECORD_STOP")
    assert hangup_a < stop and events[stop].get("Unique-ID") == b_leg


def test_bleg_follow_without_media_bug_event_follows_the_flag_on_hangup():
    events = capture_events("blind-transfer-bleg-follow-plain")
    events = [
        e
        for e in events
        if not (e.name == "MEDIA_BUG_START" and e.get("Channel-Call-UUID") != e.get("Unique-ID"))
    ]
    assert sum(e.name == "MEDIA_BUG_START" for e in events) == 1
    machine = CallMachine(make_plan(), SPOOL)
    decisions = run(machine, events, "/tmp/fscap/blind-transfer-bleg-follow-plain.wav")
    (final,) = kinds(decisions, Finalize)
    assert final.completion_cause == "success-silence"


def test_record_min_sec_discard_is_a_failed_recording():
    machine = CallMachine(make_plan(), SPOOL)
    decisions = run(
        machine,
        capture_events("record-min-sec-discarded-plain"),
        "/tmp/fscap/record-min-sec-discarded-plain.wav",
    )
    (final,) = kinds(decisions, Finalize)
    assert final.discarded and final.completion_cause == "input-too-short"
    state, reason = final_state(
        prior_state="recording",
        prior_reason="",
        completion_cause=final.completion_cause,
        discarded=True,
        size=None,
    )
    assert state == "failed" and "input-too-short" in reason and "discarded" in reason


def test_restart_mid_call_finalizes_from_record_stop_and_ends_open_calls_on_disconnect():
    events = capture_events("restart-mid-call-plain")
    machine = CallMachine(make_plan(), SPOOL)
    decisions = run(machine, events, "/tmp/fscap/restart-mid-call-plain.wav")
    (final,) = kinds(decisions, Finalize)
    assert final.hangup_cause == "SYSTEM_SHUTDOWN"
    # Same call, but the teardown after SHUTDOWN was never received: the disconnect ends it.
    cut = next(i for i, e in enumerate(events) if e.name == "SHUTDOWN") + 1
    machine = CallMachine(make_plan(), SPOOL)
    run(machine, events[:cut])
    assert len(machine.open) == 1
    (final,) = machine.connection_lost(at(events[cut - 1]))
    assert isinstance(final, Finalize) and final.hangup_cause == "SYSTEM_SHUTDOWN" and machine.open == {}


def test_reconcile_finalizes_calls_gone_while_disconnected_and_keeps_live_ones():
    events = capture_events("bridged-inbound-call-plain")
    answer_a = next(
        i for i, e in enumerate(events) if e.name == "CHANNEL_ANSWER" and e.get("Unique-ID") == A_INBOUND
    )
    now = at(events[answer_a])
    machine = CallMachine(make_plan(), SPOOL)
    run(machine, events[: answer_a + 1])
    assert machine.reconcile([{"uuid": A_INBOUND, "call_uuid": A_INBOUND, "callstate": "ACTIVE"}], now) == []
    (final,) = machine.reconcile([], now)
    assert isinstance(final, Finalize) and final.call_uuid == A_INBOUND and "down" in final.note
    # A late re-sent RECORD_STOP for it changes nothing.
    assert not kinds(run(machine, events[answer_a:]), Finalize, CreateRow)


def test_reconcile_starts_partial_recording_for_a_call_answered_while_disconnected():
    now = dt.datetime(2026, 12, 3, 3, 0, 0)
    created = int(now.replace(tzinfo=dt.UTC).timestamp()) - 30
    channels = [
        {
            "uuid": A_INBOUND,
            "call_uuid": A_INBOUND,
            "callstate": "ACTIVE",
            "cid_num": "0335550100",
            "cid_name": "홍길동",
            "dest": "2101",
            "created_epoch": str(created),
        },
        {
            "uuid": B_INBOUND,
            "call_uuid": A_INBOUND,
            "callstate": "ACTIVE",
            "cid_num": "0335550100",
            "dest": "2101",
        },
    ]
    machine = CallMachine(make_plan(), SPOOL)
    decisions = machine.reconcile(channels, now)
    row, start, notice = decisions
    assert (
        isinstance(row, CreateRow) and row.facts.record_state == "partial" and row.facts.missed_seconds == 30
    )
    assert isinstance(start, StartRecording) and start.leg_uuid == A_INBOUND
    assert machine.reconcile(channels, now) == []  # a second reconnect does not start it again
    # A call that already has a row (an earlier run) is never recorded twice.
    machine = CallMachine(make_plan(), SPOOL)
    assert machine.reconcile(channels, now, has_row=lambda uuid: uuid == A_INBOUND) == []


def test_reconcile_adopts_rows_of_an_earlier_run():
    now = dt.datetime(2026, 12, 3, 3, 0, 0)
    path = recording_path(SPOOL, now, A_INBOUND)
    machine = CallMachine(make_plan(), SPOOL)
    adopted = Adopted(A_INBOUND, A_INBOUND, path)
    live = [{"uuid": A_INBOUND, "call_uuid": A_INBOUND, "callstate": "ACTIVE", "dest": "2101"}]
    assert machine.reconcile(live, now, [adopted], has_row=lambda u: True) == [adopted]
    stop = Event(
        {
            "Event-Name": "RECORD_STOP",
            "Unique-ID": A_INBOUND,
            "Record-File-Path": path,
            "Record-Completion-Cause": "success-silence",
        }
    )
    (final,) = machine.feed(stop, now)
    assert isinstance(final, Finalize) and final.call_uuid == A_INBOUND
    gone = CallMachine(make_plan(), SPOOL).reconcile([], now, [adopted])
    assert len(gone) == 1 and isinstance(gone[0], Finalize)


def test_stopping_daemon_takes_no_new_calls():
    machine = CallMachine(make_plan(), SPOOL)
    machine.stop_taking_calls()
    decisions = run(machine, capture_events("bridged-inbound-call-plain"))
    assert not kinds(decisions, CreateRow, StartRecording)


def test_plan_reload_applies_to_new_calls_only():
    events = capture_events("bridged-inbound-call-plain")
    machine = CallMachine(make_plan(), SPOOL)
    answer_a = next(
        i for i, e in enumerate(events) if e.name == "CHANNEL_ANSWER" and e.get("Unique-ID") == A_INBOUND
    )
    first = run(machine, events[: answer_a + 1])
    machine.plan = make_plan(**{"2101": ("off", "both", "citizen")})
    (start,) = kinds(first, StartRecording)
    rest = run(machine, events[answer_a + 1 :], "/tmp/fscap/bridged-inbound-call-plain.wav", start.path)
    (final,) = kinds(rest, Finalize)
    assert final.completion_cause == "success-silence"
    # A new call on the line now set to off is not recorded.
    fresh = CallMachine(machine.plan, SPOOL)
    assert not kinds(run(fresh, events), StartRecording)


# ------------------------------------------------------------------ hostile events


def answer_event(**overrides: str) -> Event:
    headers = {
        "Event-Name": "CHANNEL_ANSWER",
        "Unique-ID": A_INBOUND,
        "Channel-Call-UUID": A_INBOUND,
        "Caller-Caller-ID-Number": "0335550100",
        "Caller-Caller-ID-Name": "홍길동",
        "Caller-Destination-Number": "2101",
    }
    headers.update(overrides)
    return Event(headers)


NOW = dt.datetime(2026, 12, 3, 3, 0, 0)


@pytest.mark.parametrize(
    "field,value",
    [
        ("Unique-ID", "../../etc/passwd"),
        ("Unique-ID", A_INBOUND + "\nEvent-Name: RECORD_STOP"),
        ("Unique-ID", A_INBOUND + " "),
        ("Unique-ID", A_INBOUND + "\n"),
        ("Unique-ID", ""),
        ("Unique-ID", "x" * 10_000),
        ("Channel-Call-UUID", "e899193f-2404-4ff8-acda-3c5f71ec99c1;uuid_kill"),
        ("Other-Leg-Unique-ID", "not-a-uuid"),
    ],
)
def test_event_with_a_bad_uuid_is_rejected_and_sends_nothing(field, value):
    machine = CallMachine(make_plan(), SPOOL)
    decisions = machine.feed(answer_event(**{field: value}), NOW)
    assert len(decisions) == 1 and isinstance(decisions[0], Reject)
    assert machine.open == {}


@pytest.mark.parametrize(
    "name",
    [
        "홍길동\nEvent-Name: RECORD_STOP",
        "%0AUnique-ID: 00000000-0000-0000-0000-000000000000",
        "a b ../../../etc",
        "x" * 10_240,
        "\ufffd\ufffd invalid utf-8",
    ],
)
def test_hostile_caller_name_is_recorded_but_never_reaches_a_command_or_path(name):
    machine = CallMachine(make_plan(), SPOOL)
    decisions = machine.feed(
        answer_event(**{"Caller-Caller-ID-Name": name, "Caller-Caller-ID-Number": name}), NOW
    )
    row, start, notice = decisions
    for d in (start, notice):
        assert name not in repr(d) and name[:20] not in repr(d)
    assert start.path == f"{SPOOL}/2026/12/03/{A_INBOUND}.wav"
    assert len(row.facts.caller_name) <= 128 and "\n" not in row.facts.caller_name


def test_hostile_destination_is_not_a_line():
    machine = CallMachine(make_plan(), SPOOL)
    for dest in ("2101\n", "2101 ", "../2101", "２１０１", "2101%0A"):
        (decision,) = machine.feed(
            answer_event(**{"Caller-Destination-Number": dest, "Unique-ID": A_INBOUND}), NOW
        )
        assert isinstance(decision, Ignore)


def test_forged_header_through_encoded_newline_cannot_steer_the_machine():
    body = (
        "Event-Name: CHANNEL_ANSWER\n"
        f"Unique-ID: {A_INBOUND}\n"
        f"Channel-Call-UUID: {A_INBOUND}\n"
        "Caller-Caller-ID-Name: x%0AUnique-ID: ../../x%0ACaller-Destination-Number: 2101\n"
        "Caller-Destination-Number: 9999\n\n"
    ).encode()
    from yangyang_rec.esl.frames import parse_plain_event

    (decision,) = CallMachine(make_plan(), SPOOL).feed(parse_plain_event(body), NOW)
    assert isinstance(decision, Ignore) and "no line" in decision.reason


def test_unsafe_announcement_is_not_broadcast():
    plan = make_plan()
    line = plan.line("2101")
    unsafe = Line(
        line.extension, line.department, line.department_name, "full", "both", "/x/notice ko.wav", "citizen"
    )
    machine = CallMachine(Plan(plan.departments, {"2101": unsafe}), SPOOL)
    decisions = machine.feed(answer_event(), NOW)
    assert not kinds(decisions, PlayNotice) and kinds(decisions, Reject) and kinds(decisions, StartRecording)


def test_recording_path_stays_in_spool_and_uses_the_kst_date():
    # 2026-12-31 20:00 UTC is 2027-01-01 in Korea.
    assert recording_path(SPOOL, dt.datetime(2026, 12, 31, 20, 0), A_INBOUND).startswith(
        f"{SPOOL}/2027/01/01/"
    )
    for bad in ("../x", "a b", A_INBOUND.upper() + "/..", ""):
        with pytest.raises(ValueError):
            recording_path(SPOOL, NOW, bad)
    with pytest.raises(ValueError):
        recording_path("var/spool", NOW, A_INBOUND)


def test_notice_leg_mapping():
    assert notice_legs("citizen", "inbound") == "aleg"
    assert notice_legs("citizen", "outbound") == "bleg"
    assert notice_legs("staff", "inbound") == "bleg"
    assert notice_legs("staff", "outbound") == "aleg"
    assert notice_legs("both", "outbound") == "both"


@pytest.mark.parametrize(
    "cause,discarded,size,prior,expected",
    [
        ("success-silence", False, 180524, "recording", "completed"),
        ("success-maxtime", False, 180524, "partial", "partial"),
        ("", False, 180524, "recording", "completed"),
        ("success-silence", False, 44, "recording", "failed"),
        ("success-silence", False, 0, "recording", "failed"),
        ("success-silence", False, None, "recording", "failed"),
        ("input-too-short", True, None, "recording", "failed"),
        ("no-input", False, 5000, "recording", "failed"),
        ("success-silence", False, 5000, "failed", "failed"),
    ],
)
def test_final_state(cause, discarded, size, prior, expected):
    state, reason = final_state(
        prior_state=prior, prior_reason="x", completion_cause=cause, discarded=discarded, size=size
    )
    assert state == expected
    assert (reason != "") == (expected != "completed")
