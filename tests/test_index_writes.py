"""The daemon's per-call writes with SQL built once give exactly what the peewee model calls give."""

import datetime as dt

import pytest
from peewee import IntegrityError

from yangyang_rec.index import Call, insert_call, open_index, select_call, update_call

ANSWERED = dt.datetime(2026, 3, 2, 1, 2, 3, 456789)


def facts(call_uuid: str) -> dict:
    return dict(
        call_uuid=call_uuid, leg_uuid=call_uuid, node="fs1", line="2101", lines_passed="2101",
        department="welfare", mode="full", direction="inbound", caller_number="01055512345",
        caller_name="홍길동", callee_number="0336702101", answered_at=ANSWERED, recorded_on=ANSWERED.date(),
        recording_path=f"/spool/{call_uuid}.wav", record_state="recording", record_reason="",
        missed_seconds=0.0, upload_state="pending",
    )


def stored(call_uuid: str) -> dict:
    row = Call.select().where(Call.call_uuid == call_uuid).dicts().get()
    row.pop("id")
    return row | {"call_uuid": "-", "leg_uuid": "-", "recording_path": "-"}


@pytest.fixture
def index(tmp_path):
    return open_index(f"sqlite:///{tmp_path / 'index.sqlite3'}")


def test_insert_gives_the_row_create_gives(index):
    Call.create(**facts("a"))
    insert_call(**facts("b"))
    assert stored("b") == stored("a")
    cursor = index.execute_sql('SELECT * FROM "call" ORDER BY id')
    names = [d[0] for d in cursor.description]
    a, b = ({n: v for n, v in zip(names, r, strict=True) if n not in ("id", "call_uuid", "leg_uuid", "recording_path")}
            for r in cursor.fetchall())
    assert a == b  # as stored, not only as read back: same text for times, same integers for booleans


def test_insert_of_an_indexed_call_is_an_integrity_error_and_changes_nothing(index):
    insert_call(**facts("a"))
    with pytest.raises(IntegrityError):
        insert_call(**facts("a") | {"line": "9999"})
    assert Call.get(Call.call_uuid == "a").line == "2101" and Call.select().count() == 1


def test_update_and_select_match_the_model(index):
    insert_call(**facts("a"))
    ended = ANSWERED + dt.timedelta(seconds=95)
    assert update_call("a", notice_played=True) == 1
    assert update_call("a", ended_at=ended, duration_s=95.0, bytes=1234, record_state="completed") == 1
    assert update_call("nobody", notice_played=True) == 0
    row = Call.get(Call.call_uuid == "a")
    assert (row.notice_played, row.ended_at, row.duration_s, row.bytes, row.record_state) == (
        True, ended, 95.0, 1234, "completed")
    got = select_call("a", "recording_path", "record_state", "answered_at", "notice_played", "ended_at")
    assert got == {"recording_path": row.recording_path, "record_state": "completed", "answered_at": ANSWERED,
                   "notice_played": True, "ended_at": ended}
    assert select_call("nobody", "record_state") is None


def test_unknown_field_is_refused(index):
    with pytest.raises(ValueError, match="no field 'colour'"):
        update_call("a", colour="red")
    with pytest.raises(ValueError, match="no field 'colour'"):
        insert_call(**facts("a") | {"colour": "red"})
    assert Call.select().count() == 0
