"""The shipper against a real S3 server (moto on loopback) and a real SQLite index."""

import base64
import dataclasses
import datetime as dt
import random
import subprocess
import time
from pathlib import Path

import gevent
import pytest
import structlog
from gevent.event import Event

from tests.call_rows import make_call, versions_of
from yangyang_rec.bucket import apply_bucket_setup, make_client, object_key
from yangyang_rec.index import Call, open_index, utcnow
from yangyang_rec.retention import due_at_utc, retain_until
from yangyang_rec.shipper import FAILED_AFTER_ATTEMPTS, Shipper, backoff_seconds


@pytest.fixture
def ready(s3_settings):
    """Settings, client and index for a set-up bucket (versioning on, so every PUT is a version)."""
    open_index(s3_settings.database_url)
    client = make_client(s3_settings)
    assert apply_bucket_setup(client, s3_settings).ok
    return s3_settings, client


def test_upload_and_verify(ready):
    settings, client = ready
    rows = [make_call(settings, size=1000 + i) for i in range(3)]
    result = Shipper(settings, client).drain_once()
    assert (result.uploaded, result.adopted, result.failed, result.backlog) == (3, 0, 0, 0)
    for before in rows:
        row = Call.get_by_id(before.id)
        assert row.upload_state == "uploaded" and row.key == object_key("welfare", row.recorded_on, row.call_uuid)
        assert row.etag and row.version_id and row.uploaded_at and row.upload_claimed_by == ""
        assert row.retain_until == retain_until(row.recorded_on)
        assert not before.recording_path or not Path(before.recording_path).exists()
        head = client.head_object(Bucket=settings.s3_bucket, Key=row.key, ChecksumMode="ENABLED")
        assert head["ServerSideEncryption"] == "AES256"
        assert head["ContentLength"] == row.bytes
        assert head["Metadata"]["sha256"] == row.sha256 and head["Metadata"]["call-uuid"] == row.call_uuid
        assert base64.b64decode(head["ChecksumSHA256"]).hex() == row.sha256


def test_multipart_above_threshold(ready):
    settings, client = ready
    row = make_call(settings, size=12 * 1024 * 1024)
    result = Shipper(settings, client).drain_once()
    assert result.uploaded == 1
    row = Call.get_by_id(row.id)
    assert row.etag.endswith("-3")  # three 5 MB parts
    assert len(versions_of(client, settings.s3_bucket, row.key)) == 1


def test_object_lock_retains_until_due(s3_settings):
    settings = dataclasses.replace(s3_settings, s3_object_lock=True)
    open_index(settings.database_url)
    client = make_client(settings)
    assert apply_bucket_setup(client, settings).ok
    row = make_call(settings)
    assert Shipper(settings, client).drain_once().uploaded == 1
    row = Call.get_by_id(row.id)
    head = client.head_object(Bucket=settings.s3_bucket, Key=row.key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"].replace(tzinfo=None) == due_at_utc(row.recorded_on)


def _leave_uploading(row, claimed_at):
    Call.update(upload_state="uploading", upload_claimed_by="fs1:999:dead", upload_claimed_at=claimed_at).where(
        Call.id == row.id
    ).execute()


@pytest.mark.parametrize("size", [4096, 12 * 1024 * 1024])
def test_restart_mid_upload_adopts_the_finished_put(ready, size):
    settings, client = ready
    row = make_call(settings, size=size)
    dead = Shipper(settings, client)
    key = object_key(row.department, row.recorded_on, row.call_uuid)
    # The killed daemon's PUT completed, then it died before writing the row.
    dead._upload(row, Path(row.recording_path), key, row.sha256)
    _leave_uploading(row, utcnow() - dt.timedelta(hours=2))

    result = Shipper(settings, client).drain_once()
    assert (result.uploaded, result.adopted) == (0, 1)
    assert len(versions_of(client, settings.s3_bucket, key)) == 1
    row = Call.get_by_id(row.id)
    assert row.upload_state == "uploaded" and row.key == key
    assert not Path(row.recording_path).exists()


def test_adopts_when_the_file_was_already_freed(ready):
    settings, client = ready
    row = make_call(settings)
    key = object_key(row.department, row.recorded_on, row.call_uuid)
    Shipper(settings, client)._upload(row, Path(row.recording_path), key, row.sha256)
    Path(row.recording_path).unlink()
    _leave_uploading(row, utcnow() - dt.timedelta(hours=2))
    assert Shipper(settings, client).drain_once().adopted == 1
    assert len(versions_of(client, settings.s3_bucket, key)) == 1


def test_missing_file_without_object_is_loud_and_retried(ready):
    settings, client = ready
    row = make_call(settings)
    Path(row.recording_path).unlink()
    with structlog.testing.capture_logs() as logs:
        result = Shipper(settings, client).drain_once()
    assert result.failed == 1 and "missing and the bucket has no copy" in result.errors[0]
    assert [e["log_level"] for e in logs if e["event"] == "upload.failed"] == ["error"]
    row = Call.get_by_id(row.id)
    assert row.upload_state == "pending" and row.next_attempt_at is not None


def test_restart_mid_upload_uploads_when_nothing_landed(ready):
    settings, client = ready
    stale, fresh = make_call(settings), make_call(settings)
    _leave_uploading(stale, utcnow() - dt.timedelta(hours=2))
    _leave_uploading(fresh, utcnow() - dt.timedelta(minutes=1))  # another daemon is on it right now

    result = Shipper(settings, client).drain_once()
    assert result.uploaded == 1
    assert Call.get_by_id(stale.id).upload_state == "uploaded"
    assert Call.get_by_id(fresh.id).upload_state == "uploading"


def test_lease_of_a_killed_process_on_this_host_is_freed_at_once(ready):
    settings, client = ready
    dead = subprocess.Popen(["true"])
    dead.wait()
    row = make_call(settings)
    shipper = Shipper(settings, client)
    Call.update(upload_state="uploading", upload_claimed_by=f"{shipper.host}:{dead.pid}:abcd",
                upload_claimed_at=utcnow()).where(Call.id == row.id).execute()
    other_host = make_call(settings, upload_state="uploading", upload_claimed_by=f"fs2@elsewhere:{dead.pid}:abcd",
                           upload_claimed_at=utcnow())
    key = object_key(row.department, row.recorded_on, row.call_uuid)
    shipper._upload(row, Path(row.recording_path), key, row.sha256)  # its PUT had completed
    result = shipper.drain_once()
    assert (result.uploaded, result.adopted) == (0, 1)
    assert len(versions_of(client, settings.s3_bucket, key)) == 1
    row = Call.get_by_id(row.id)
    assert row.upload_state == "uploaded" and row.upload_attempts == 1
    assert Call.get_by_id(other_host.id).upload_state == "uploading"  # its lease must expire first


def test_two_shippers_on_one_index_never_upload_the_same_row(ready):
    settings, client = ready
    settings = dataclasses.replace(settings, upload_concurrency=3)
    rows = [make_call(settings, size=2000) for _ in range(24)]
    a, b = Shipper(settings, client), Shipper(settings, client)
    ga, gb = gevent.spawn(a.drain_once), gevent.spawn(b.drain_once)
    gevent.joinall([ga, gb], raise_error=True)
    assert ga.value.uploaded + gb.value.uploaded == 24
    assert ga.value.uploaded and gb.value.uploaded  # both really worked
    for row in rows:
        key = Call.get_by_id(row.id).key
        assert len(versions_of(client, settings.s3_bucket, key)) == 1, key


def test_rows_not_ready_are_not_shipped(ready):
    settings, client = ready
    recording = make_call(settings, record_state="recording")
    missed = make_call(settings, record_state="missed", upload_state="none")
    old = dt.datetime(2020, 5, 1, 3, 0)
    due = make_call(settings, answered_at=old)  # already due: the purge destroys it instead
    result = Shipper(settings, client).drain_once()
    assert result.uploaded == 0
    assert [Call.get_by_id(r.id).upload_state for r in (recording, missed, due)] == ["pending", "none", "pending"]


def test_changed_file_backs_off_and_keeps_the_file(ready):
    settings, client = ready
    row = make_call(settings)
    with open(row.recording_path, "r+b") as f:
        f.write(b"X")
    result = Shipper(settings, client, rng=random.Random(1)).drain_once()
    assert result.failed == 1 and "changed since it was indexed" in result.errors[0]
    row = Call.get_by_id(row.id)
    assert row.upload_state == "pending" and row.upload_attempts == 1
    assert row.next_attempt_at > utcnow()
    assert Path(row.recording_path).exists()
    # Never given up: after many attempts the row is 'failed' but still claimed again when due.
    Call.update(upload_attempts=FAILED_AFTER_ATTEMPTS, next_attempt_at=utcnow()).where(Call.id == row.id).execute()
    Shipper(settings, client).drain_once()
    row = Call.get_by_id(row.id)
    assert row.upload_state == "failed" and row.upload_attempts == FAILED_AFTER_ATTEMPTS + 1


def test_backoff_grows_with_jitter_and_is_capped():
    rng = random.Random(7)
    waits = [backoff_seconds(n, rng) for n in range(1, 20)]
    assert 2.5 <= waits[0] <= 5 and 5 <= waits[1] <= 10
    assert max(waits) <= 15 * 60 and waits[-1] >= 7.5 * 60


def test_outage_keeps_the_queue_then_drains_oldest_first(restartable_s3, tmp_path):
    from tests.s3_fixtures import settings_for

    settings = settings_for(restartable_s3.endpoint, tmp_path, upload_concurrency=1)
    open_index(settings.database_url)
    client = make_client(settings, max_attempts=1, connect_timeout=1)
    assert apply_bucket_setup(client, settings).ok
    start = utcnow() - dt.timedelta(minutes=30)
    rows = [make_call(settings, answered_at=start + dt.timedelta(minutes=i)) for i in (3, 1, 4, 0, 2)]

    restartable_s3.stop()
    shipper = Shipper(settings, client, report_every=0.0)
    with structlog.testing.capture_logs() as logs:
        result = shipper.drain_once()
        shipper.report()
    assert result.outage and result.uploaded == 0 and result.backlog == 5
    states = {r.id: Call.get_by_id(r.id) for r in rows}
    assert all(r.upload_state == "pending" and r.next_attempt_at is None for r in states.values())
    assert sum(r.upload_attempts for r in states.values()) == 1 and any(r.upload_error for r in states.values())
    backlog = [e for e in logs if e["event"] == "upload.backlog"]
    assert backlog and backlog[0]["backlog_count"] == 5 and backlog[0]["spool_bytes"] == 5 * 4096
    assert backlog[0]["outage"]

    # The daemon's shipper greenlet keeps probing; the bucket comes back; the backlog drains.
    stop = Event()
    runner = gevent.spawn(shipper.run_forever, stop)
    gevent.sleep(0.3)
    restartable_s3.start()
    deadline = utcnow() + dt.timedelta(seconds=20)
    while shipper.backlog()[0] and utcnow() < deadline:
        gevent.sleep(0.1)
    stop.set()
    runner.join(timeout=5)
    done = sorted(Call.select(), key=lambda r: r.answered_at)
    assert all(r.upload_state == "uploaded" for r in done)
    uploaded_order = [r.uploaded_at for r in done]
    assert uploaded_order == sorted(uploaded_order)  # oldest call first


def test_event_loop_keeps_running_while_30_mb_is_hashed_and_uploaded(s3_process_endpoint, tmp_path):
    from tests.s3_fixtures import settings_for

    settings = settings_for(s3_process_endpoint, tmp_path)
    open_index(settings.database_url)
    client = make_client(settings)
    assert apply_bucket_setup(client, settings).ok
    make_call(settings, size=30 * 1024 * 1024)
    gaps, running = [], True

    def ticker():
        last = time.monotonic()
        while running:
            gevent.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    tick = gevent.spawn(ticker)
    result = Shipper(settings, client).drain_once()
    running = False
    tick.join()
    assert result.uploaded == 1
    assert len(gaps) > 20
    assert max(gaps) < 0.050, f"event loop stalled {max(gaps) * 1000:.0f} ms"
