"""The purge against a real S3 server (moto) and a real SQLite index: due to the second, all versions,
legal hold, object lock, personal data erased, register without personal data, CSV export."""

import csv
import dataclasses
import datetime as dt
import io
from pathlib import Path

import pytest

from tests.call_rows import make_call, versions_of
from yangyang_rec.bucket import apply_bucket_setup, make_client
from yangyang_rec.index import Call, Destruction, open_index
from yangyang_rec.purge import REGISTER_COLUMNS, export_register, purge
from yangyang_rec.retention import RULE_TEXT, due_at_utc
from yangyang_rec.shipper import Shipper

SECOND = dt.timedelta(seconds=1)


def shipped(settings, client, **fields):
    row = make_call(settings, **fields)
    assert Shipper(settings, client).drain_once().uploaded == 1
    return Call.get_by_id(row.id)


def test_destroys_exactly_when_due_every_version_and_registers_it(ready):
    settings, client = ready
    row = shipped(settings, client)
    bucket, key = settings.s3_bucket, row.key
    client.put_object(Bucket=bucket, Key=key, Body=b"second version")  # an extra version
    client.delete_object(Bucket=bucket, Key=key)  # and a delete marker on top
    due = due_at_utc(row.recorded_on)

    early = purge(settings, client, now=due - SECOND)
    assert early.counts == {} and Call.get_by_id(row.id).destroyed_at is None

    result = purge(settings, client, now=due)
    assert result.counts == {"destroyed": 1} and result.versions_deleted == 3
    assert client.list_object_versions(Bucket=bucket, Prefix=key).get("Versions") is None
    assert client.list_object_versions(Bucket=bucket, Prefix=key).get("DeleteMarkers") is None
    after = Call.get_by_id(row.id)
    assert after.destroyed_at == due
    assert (after.caller_number, after.caller_name, after.callee_number, after.recording_path) == ("", "", "", "")
    assert after.key == key and after.sha256 == row.sha256  # what was destroyed stays identifiable

    entry = Destruction.get(Destruction.call_uuid == row.call_uuid)
    assert (entry.key, entry.bytes, entry.sha256, entry.recorded_on, entry.rule) == (
        key, row.bytes, row.sha256, row.recorded_on, RULE_TEXT)

    out = io.StringIO()
    assert export_register(out) == 1
    lines = list(csv.reader(io.StringIO(out.getvalue())))
    assert tuple(lines[0]) == REGISTER_COLUMNS
    assert lines[1][0] == row.call_uuid and lines[1][5] == due.isoformat() + "Z"
    assert "0105551" not in out.getvalue() and "Hong" not in out.getvalue()

    assert purge(settings, client, now=due + dt.timedelta(days=3)).counts == {}  # idempotent


def test_legal_hold_is_skipped_and_listed(ready):
    settings, client = ready
    held = shipped(settings, client, legal_hold=True)
    result = purge(settings, client, now=due_at_utc(held.recorded_on) + dt.timedelta(days=30))
    assert result.counts == {"held": 1}
    assert any(held.call_uuid in line for line in result.lines())
    assert len(versions_of(client, settings.s3_bucket, held.key)) == 1
    assert Call.get_by_id(held.id).caller_number == "01055512345"


def test_dry_run_changes_nothing(ready):
    settings, client = ready
    row = shipped(settings, client)
    result = purge(settings, client, now=due_at_utc(row.recorded_on), dry_run=True)
    assert result.counts == {"would destroy": 1} and "1 object version(s)" in result.items[0].detail
    assert Call.get_by_id(row.id).destroyed_at is None and Destruction.select().count() == 0
    assert len(versions_of(client, settings.s3_bucket, row.key)) == 1


def test_never_uploaded_recording_is_destroyed_from_the_spool(ready):
    settings, client = ready
    row = make_call(settings, upload_state="pending")
    result = purge(settings, client, now=due_at_utc(row.recorded_on))
    assert result.counts == {"destroyed": 1} and result.spool_files_deleted == 1
    assert not Path(row.recording_path).exists()
    assert Destruction.get(Destruction.call_uuid == row.call_uuid).key == ""


def test_row_being_uploaded_is_left_for_the_next_run(ready):
    settings, client = ready
    row = make_call(settings)
    due = due_at_utc(row.recorded_on)
    Call.update(upload_state="uploading", upload_claimed_by="fs2:1:x", upload_claimed_at=due - SECOND).where(
        Call.id == row.id).execute()
    assert purge(settings, client, now=due).counts == {"in upload": 1}


def test_object_lock_refusal_is_reported_and_nothing_erased(s3_settings):
    settings = dataclasses.replace(s3_settings, s3_object_lock=True)
    open_index(settings.database_url)
    client = make_client(settings)
    assert apply_bucket_setup(client, settings).ok
    row = shipped(settings, client)
    # The purge is told it is a year later, but the store's clock says the lock still holds.
    result = purge(settings, client, now=due_at_utc(row.recorded_on))
    assert result.counts == {"refused": 1} and "AccessDenied" in result.items[0].detail
    assert not result.clean
    assert Call.get_by_id(row.id).destroyed_at is None and Call.get_by_id(row.id).caller_number
    assert len(versions_of(client, settings.s3_bucket, row.key)) == 1


@pytest.mark.parametrize("upload_delay_days", [0, 200])
def test_leap_day_and_delayed_upload(ready, upload_delay_days):
    """Recorded 2028-02-29 KST: kept through 2029-03-01 KST whatever the upload date."""
    settings, client = ready
    answered = dt.datetime(2028, 2, 28, 15, 30)  # 00:30 KST on 29 February
    row = shipped(settings, client, answered_at=answered)
    Call.update(uploaded_at=answered + dt.timedelta(days=upload_delay_days, minutes=5)).where(Call.id == row.id).execute()
    assert row.recorded_on == dt.date(2028, 2, 29) and row.retain_until == dt.date(2029, 3, 1)
    assert purge(settings, client, now=dt.datetime(2029, 3, 1, 14, 59, 59)).counts == {}
    assert purge(settings, client, now=dt.datetime(2029, 3, 1, 15, 0, 0)).counts == {"destroyed": 1}


def test_destroyed_row_with_personal_data_back_is_erased_again(ready):
    settings, client = ready
    row = make_call(settings, upload_state="none", record_state="missed", recording_path="")
    due = due_at_utc(row.recorded_on)
    purge(settings, client, now=due)
    Call.update(caller_number="01099998888").where(Call.id == row.id).execute()
    assert purge(settings, client, now=due).counts == {"erased again": 1}
    assert Call.get_by_id(row.id).caller_number == "" and Destruction.select().count() == 1
