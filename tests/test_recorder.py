"""The recorder daemon against the FreeSWITCH stand-in over real TCP: one test per rule."""

from __future__ import annotations

from pathlib import Path

import gevent
from structlog.testing import capture_logs

from tests.recorder_fixtures import NOTICE, TEST_LINES, sha256


def one_completed_row(rec, call):
    rows = rec.rows()
    assert len(rows) == 1, [(r.call_uuid, r.record_state) for r in rows]
    row = rows[0]
    assert row.call_uuid == call.a_uuid
    assert row.record_state == "completed", row.record_reason
    assert row.sha256 == sha256(row.recording_path)
    assert row.bytes > 44 and row.upload_state == "pending" and row.ended_at is not None
    assert call.recordings == [row.recording_path]
    return row


def test_both_legs_answered_gives_one_recording_of_the_a_leg_and_one_row(recorder, standin):
    rec = recorder()
    call = standin.place_call(kind="inbound", line="2101", outside="0335550100", talk_s=5)
    rec.settle()
    row = one_completed_row(rec, call)
    assert (row.line, row.direction, row.department, row.leg_uuid) == (
        "2101",
        "inbound",
        "welfare",
        call.a_uuid,
    )
    assert row.notice_played and row.caller_number == "0335550100" and row.caller_name == "홍길동"
    assert rec.api("uuid_record") == [f"uuid_record {call.a_uuid} start {row.recording_path}"]
    assert row.recording_path.startswith(str(rec.settings.spool_dir.resolve()))
    assert 4.5 < row.duration_s < 6.5


def test_recording_starts_before_the_notice_and_in_stereo(recorder, standin):
    rec = recorder()
    calls = [
        standin.place_call(kind=k, line=line, talk_s=3)
        for k, line in (("inbound", "2101"), ("outbound", "2102"))
    ]
    rec.settle()
    log = [cmd for _t, cmd in standin.api_log]
    for call in calls:
        mine = [c for c in log if call.a_uuid in c]
        assert mine[0] == f"uuid_setvar {call.a_uuid} RECORD_STEREO true"
        record = next(i for i, c in enumerate(mine) if c.startswith("uuid_record"))
        broadcast = next(i for i, c in enumerate(mine) if c.startswith("uuid_broadcast"))
        assert record < broadcast
    legs = {c.split()[-1] for c in rec.api("uuid_broadcast")}
    assert legs == {"aleg", "bleg"}  # citizen is the A leg inbound, the B leg outbound


def test_duplicated_channel_answer_gives_one_recording(recorder, standin):
    rec = recorder()
    standin.duplicate_events("CHANNEL_ANSWER", 2)
    call = standin.place_call(kind="inbound", line="2101", talk_s=4)
    rec.settle()
    one_completed_row(rec, call)
    assert len(rec.api("uuid_record")) == 1 and len(rec.api("uuid_broadcast")) == 1


def test_blind_transfer_of_the_caller_keeps_one_recording_and_notes_the_lines(recorder, standin):
    rec = recorder()
    call = standin.place_call(kind="inbound", line="2101", talk_s=8, transfer_to="2102", transfer_kind="aleg")
    rec.settle()
    row = one_completed_row(rec, call)
    assert row.lines_passed == "2101,2102"
    assert len(rec.api("uuid_record")) == 1


def test_transfer_of_the_staff_leg_moves_the_recording_with_it(recorder, standin):
    rec = recorder()
    call = standin.place_call(kind="inbound", line="2101", talk_s=8, transfer_to="2102", transfer_kind="bleg")
    rec.settle()
    row = one_completed_row(rec, call)
    assert row.lines_passed == "2101,2102"
    assert row.leg_uuid == call.b_uuid  # the recording followed the staff leg
    assert len(rec.api("uuid_record")) == 1


def test_lines_in_off_and_on_demand_mode_and_out_of_scope_calls_are_not_recorded(recorder, standin):
    rec = recorder()
    standin.place_call(kind="inbound", line="2103", talk_s=3)  # on_demand
    standin.place_call(kind="inbound", line="2104", talk_s=3)  # off
    standin.place_call(kind="outbound", line="2105", talk_s=3)  # inbound-only line dialling out
    standin.place_call(kind="internal", line="2101", other_line="2102", talk_s=3)
    standin.place_call(kind="inbound", line="2101", answer=False)
    rec.settle()
    assert rec.rows() == []
    assert rec.api("uuid_record") == [] and rec.api("uuid_broadcast") == []


def test_uuid_record_error_marks_the_call_failed(recorder, standin):
    rec = recorder()
    standin.fail_uuid_record("2101")
    call = standin.place_call(kind="inbound", line="2101", talk_s=3)
    rec.settle()
    (row,) = rec.rows()
    assert row.call_uuid == call.a_uuid and row.record_state == "failed"
    assert "-ERR Cannot record session!" in row.record_reason
    assert row.upload_state == "none" and row.ended_at is not None and row.hangup_cause == "NORMAL_CLEARING"
    assert not row.notice_played
    # The notice goes out in the same write as uuid_record, after it (so short calls are not lost).
    log = [cmd for _t, cmd in standin.api_log]
    assert log.index(rec.api("uuid_record")[0]) < log.index(rec.api("uuid_broadcast")[0])
    assert rec.recorder.counts["record_error"] == 1


def test_header_only_wav_is_failed_not_completed(recorder, standin, monkeypatch):
    """No RTP reached FreeSWITCH (a firewall, a dead phone): it closes the WAV with its header alone."""
    from yangyang_rec.standin import server, wav

    def no_audio(rec, seconds):
        return wav.write_recording(Path(rec.path), 0, 2 if rec.stereo else 1)

    monkeypatch.setattr(server, "wav_write", no_audio)
    rec = recorder()
    call = standin.place_call(kind="inbound", line="2101", talk_s=3)
    rec.settle()
    (row,) = rec.rows()
    assert row.call_uuid == call.a_uuid
    assert row.record_state == "failed" and "header-only" in row.record_reason and row.bytes == 44
    assert row.upload_state == "none" and row.sha256 == ""


def test_freeswitch_restart_mid_call_finalizes_the_call_and_recording_resumes_after(recorder, standin):
    rec = recorder()
    call = standin.place_call(kind="inbound", line="2101", talk_s=60)
    while not rec.rows() or not call.recordings:
        gevent.sleep(0.02)
    gevent.sleep(0.1)
    standin.restart(down_s=0.3)
    assert call.done.wait(5)
    gevent.sleep(0.2)
    (row,) = rec.rows()
    assert row.record_state == "completed" and row.hangup_cause == "SYSTEM_SHUTDOWN"
    assert row.sha256 == sha256(row.recording_path)
    gevent.sleep(2.5)  # backoff, then a fresh connection
    assert rec.recorder.esl.connections == 2 and rec.recorder.esl.current is not None
    after = standin.place_call(kind="inbound", line="2102", talk_s=3)
    rec.settle()
    assert {r.call_uuid: r.record_state for r in rec.rows()} == {
        call.a_uuid: "completed",
        after.a_uuid: "completed",
    }


def test_hostile_caller_values_never_reach_a_command_or_a_path(recorder, standin):
    rec = recorder()
    names = [
        "홍길동\nEvent-Name: RECORD_STOP",
        "x%0AUnique-ID: ../../../etc/passwd",
        "a b c ../..",
        "..",
        "가" * 3500,  # about 10 kB of UTF-8
    ]
    calls = [standin.place_call(kind="inbound", line="2101", caller_name=n, talk_s=10) for n in names]
    standin.send_malformed()
    calls.append(
        standin.place_call(kind="inbound", line="2102", outside="0335550100 uuid_kill ..", talk_s=10)
    )
    rec.settle()
    rows = {r.call_uuid: r for r in rec.rows()}
    assert set(rows) == {c.a_uuid for c in calls}
    spool = str(rec.settings.spool_dir.resolve())
    for row in rows.values():
        assert row.record_state == "completed", (row.record_reason, row.caller_name[:30], row.caller_number)
        assert row.recording_path.startswith(spool + "/")
        assert "\n" not in row.caller_name and len(row.caller_name) <= 128
    for _t, cmd in standin.api_log:
        assert "\n" not in cmd and ".." not in cmd and "uuid_kill" not in cmd and "etc" not in cmd
        assert "홍" not in cmd and "가" not in cmd and "%" not in cmd
    assert (
        not rec.greenlet.dead and rec.recorder.counts["event_rejected"] == 0
    )  # the broken frame: skipped by the reader


def test_reload_with_a_bad_file_keeps_the_last_good_plan(recorder, standin):
    rec = recorder()
    with capture_logs() as logs:
        rec.lines_file.write_text(TEST_LINES + '      - 2101\n      - {ext: "2106", mode: sometimes}\n')
        rec.recorder.reload_requested.set()
        gevent.sleep(0.3)
    problems = [e["problem"] for e in logs if e["event"] == "plan.invalid"]
    assert any(":" in p and "2101" in p for p in problems) and len(problems) >= 2
    assert any(e["event"] == "plan.kept_last_good" for e in logs)
    call = standin.place_call(kind="inbound", line="2101", talk_s=2)
    rec.settle()
    one_completed_row(rec, call)
    # A good file turning 2101 off applies to new calls, picked up from the file change alone.
    rec.lines_file.write_text(TEST_LINES.replace("      - 2101\n", '      - {ext: "2101", mode: off}\n'))
    gevent.sleep(1.5)
    standin.place_call(kind="inbound", line="2101", talk_s=2)
    rec.settle()
    assert len(rec.rows()) == 1


def test_call_gone_before_uuid_record_is_missed_not_failed(recorder, standin):
    """Events reach the daemon late (a loaded switch): the caller hung up before uuid_record arrived."""
    rec = recorder()
    standin.delay_events(1.0)
    call = standin.place_call(kind="inbound", line="2101", ring_s=0.05, talk_s=0.1)
    rec.settle()
    (row,) = rec.rows()
    assert row.call_uuid == call.a_uuid
    assert row.record_state == "missed"
    assert row.record_reason.startswith("the call ended before the recording could start")
    assert row.upload_state == "none" and row.ended_at is not None
    assert rec.recorder.counts["record_missed"] == 1


def test_shipper_is_woken_once_per_finished_recording(recorder, standin):
    woken = []
    rec = recorder(on_ready_to_ship=lambda: woken.append(1))
    standin.place_call(kind="inbound", line="2101", talk_s=2)
    standin.place_call(kind="inbound", line="2104", talk_s=2)  # an off line: nothing to ship
    rec.settle()
    assert [r.upload_state for r in rec.rows()] == ["pending"]
    assert len(woken) == 1


def test_day_folders_are_made_by_the_daemon_group_writable_whatever_the_umask(tmp_path):
    """FreeSWITCH writes into them through the spool's group; the unit runs the daemon with UMask=0027."""
    import os
    import stat

    from yangyang_rec.recorder import make_day_folder

    spool = tmp_path / "spool"
    spool.mkdir()
    old = os.umask(0o027)
    try:
        make_day_folder(spool, spool / "2027" / "03" / "01")
    finally:
        os.umask(old)
    for folder in (spool / "2027", spool / "2027" / "03", spool / "2027" / "03" / "01"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o2770


def test_missing_notice_file_records_the_call_but_never_claims_the_notice_played(recorder, standin, tmp_path):
    """FreeSWITCH answers +OK to uuid_broadcast of a missing file; the index must not believe it."""
    lines = TEST_LINES.replace(str(NOTICE), str(tmp_path / "no-such-notice.wav"))
    rec = recorder(lines_text=lines)
    standin.place_call(kind="inbound", line="2101", talk_s=2)
    rec.settle()
    (row,) = rec.rows()
    assert row.record_state == "completed" and not row.notice_played
    assert rec.api("uuid_broadcast") == []
    assert rec.recorder.counts["notice_unplayable"] == 1
