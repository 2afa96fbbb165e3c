"""The retention audit against a real S3 server (moto) and a real SQLite index: each finding kind planted."""

import dataclasses
import datetime as dt
import os
import time
from pathlib import Path

from tests.call_rows import make_call
from yangyang_rec.audit import _merge, _spool_files, audit
from yangyang_rec.bucket import make_client, object_key
from yangyang_rec.index import Call, open_index, utcnow
from yangyang_rec.retention import due_at_utc
from yangyang_rec.shipper import Shipper


def shipped(settings, client, n=1, **fields):
    rows = [make_call(settings, **fields) for _ in range(n)]
    assert Shipper(settings, client).drain_once().uploaded == n
    return [Call.get_by_id(r.id) for r in rows]


def kinds(report):
    return {k: v for k, v in report.counts.items() if v}


def test_clean_when_everything_is_in_place(ready):
    settings, client = ready
    shipped(settings, client, n=3)
    make_call(settings, record_state="recording")  # a call in progress: its file is expected
    report = audit(settings, client, deep=True)
    assert report.clean, report.lines()
    assert (report.rows, report.objects, report.spool_files) == (4, 3, 1)


def test_overdue_in_bucket_spool_and_index(ready):
    settings, client = ready
    (up,) = shipped(settings, client)
    local = make_call(settings)  # never uploaded: due with its spool file
    held = make_call(settings, legal_hold=True)
    report = audit(settings, client, now=due_at_utc(up.recorded_on))
    overdue = [f for f in report.findings if f.kind == "overdue"]
    assert {(f.call_uuid, f.where) for f in overdue} == {
        (up.call_uuid, up.key), (up.call_uuid, "index"),
        (local.call_uuid, local.recording_path), (local.call_uuid, "index"),
    }
    assert held.call_uuid not in {f.call_uuid for f in overdue}  # held: kept lawfully (but stuck, not uploaded)
    assert not report.clean


def test_destroyed_row_with_object_or_personal_data_is_overdue(ready):
    settings, client = ready
    (row,) = shipped(settings, client)
    Call.update(destroyed_at=utcnow()).where(Call.id == row.id).execute()  # the purge "forgot" both
    report = audit(settings, client)
    details = " | ".join(f.detail for f in report.findings if f.kind == "overdue")
    assert "still there" in details
    assert report.counts["overdue"] == 1  # not due yet by date, so only the object counts


def test_missing_absent_resized_and_changed(ready):
    settings, client = ready
    gone, resized, changed = shipped(settings, client, n=3)
    bucket = settings.s3_bucket
    for v in client.list_object_versions(Bucket=bucket, Prefix=gone.key)["Versions"]:
        client.delete_object(Bucket=bucket, Key=gone.key, VersionId=v["VersionId"])
    client.put_object(Bucket=bucket, Key=resized.key, Body=b"short")
    client.put_object(Bucket=bucket, Key=changed.key, Body=os.urandom(changed.bytes), Metadata={"sha256": "0" * 64})
    lost = make_call(settings)
    Path(lost.recording_path).unlink()  # spool file gone before upload

    shallow = audit(settings, client)
    assert {f.call_uuid for f in shallow.findings if f.kind == "missing"} == {gone.call_uuid, resized.call_uuid,
                                                                              lost.call_uuid}
    deep = audit(settings, client, deep=True)
    assert {f.call_uuid for f in deep.findings if f.kind == "missing"} == {
        gone.call_uuid, resized.call_uuid, changed.call_uuid, lost.call_uuid}
    assert kinds(deep) == {"missing": 4}


def test_orphans_in_bucket_and_spool_and_leftover(ready):
    settings, client = ready
    (row,) = shipped(settings, client)
    client.put_object(Bucket=settings.s3_bucket, Key="recordings/tax/2027/01/01/stray.wav", Body=b"x")
    stray = settings.spool_dir / "2027" / "01" / "01" / "stray.wav"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"y")
    old = time.time() - 3600
    os.utime(stray, (old, old))
    young = settings.spool_dir / "young.wav"  # may be a call whose row is being written: not yet an orphan
    young.write_bytes(b"z")
    Path(row.recording_path).write_bytes(b"left behind")

    report = audit(settings, client)
    assert kinds(report) == {"orphan": 2, "leftover": 1}
    assert {f.where for f in report.findings if f.kind == "orphan"} == {
        "recordings/tax/2027/01/01/stray.wav", str(stray)}
    assert [f.call_uuid for f in report.findings if f.kind == "leftover"] == [row.call_uuid]


def test_stuck_uploads(ready):
    settings, client = ready
    old = utcnow() - dt.timedelta(hours=3)
    stuck = make_call(settings, answered_at=old, upload_attempts=4, upload_error="EndpointConnectionError")
    make_call(settings)  # pending for 5 minutes: not stuck
    report = audit(settings, client)
    assert kinds(report) == {"stuck": 1}
    (finding,) = report.findings
    assert finding.call_uuid == stuck.call_uuid and "4 attempt(s)" in finding.detail and "Endpoint" in finding.detail


def test_lifecycle_problems(ready):
    settings, client = ready
    client.delete_bucket_encryption(Bucket=settings.s3_bucket)
    client.delete_bucket_lifecycle(Bucket=settings.s3_bucket)
    report = audit(settings, client)
    assert kinds(report) == {"lifecycle": 2}
    locked = audit(dataclasses.replace(settings, s3_object_lock=True), client)
    assert locked.counts["lifecycle"] == 3


def test_unreachable_bucket_is_never_clean(tmp_path):
    from tests.s3_fixtures import free_port, settings_for

    settings = settings_for(f"http://127.0.0.1:{free_port()}", tmp_path)
    open_index(settings.database_url)
    report = audit(settings, make_client(settings, max_attempts=1, connect_timeout=1))
    assert not report.clean and "cannot reach" in report.error


def test_spool_walk_is_in_byte_order(tmp_path):
    for name in ("a/x.wav", "a-b.wav", "a0.wav", "b/2/z.wav", "b/10/y.wav", "A.wav"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    paths = [p for p, _ in _spool_files(str(tmp_path))]
    assert paths == sorted(paths) and len(paths) == 6


def test_merge_join():
    pairs = list(_merge(iter([1, 3, 4]), iter([2, 3, 5]), lambda x: x, lambda x: x))
    assert pairs == [(1, None), (None, 2), (3, 3), (4, None), (None, 5)]


def test_object_of_a_row_still_uploading_is_not_an_orphan(ready):
    """kill -9 between the PUT and the index write: the object's row says 'uploading', not orphan."""
    settings, client = ready
    row = make_call(settings, upload_state="uploading")
    key = object_key(row.department, row.recorded_on, row.call_uuid)
    client.put_object(Bucket=settings.s3_bucket, Key=key, Body=Path(row.recording_path).read_bytes())
    report = audit(settings, client)
    assert kinds(report).get("orphan", 0) == 0
