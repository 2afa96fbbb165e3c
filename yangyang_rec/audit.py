"""Retention audit: index <-> bucket <-> spool in one streaming pass each; memory does not grow with calls.

Each pass merge-joins two streams sorted the same way (index rows by key and the bucket
listing by key; index rows by recording path and a sorted walk of the spool), so neither
side is ever held in memory. Findings:

  overdue    past its year and still present (object, spool file or personal data in the index)
  missing    indexed as uploaded but absent from the bucket, or its size / SHA-256 differs;
             or a finished recording not uploaded whose spool file is gone
  orphan     an object or spool file that no index row knows
  leftover   a spool copy of a recording already uploaded (the shipper frees it; safe to delete)
  stuck      waiting for upload longer than stuck_after_minutes
  lifecycle  bucket rule, encryption, public-access block or object lock missing or wrong
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError
from peewee import SQL, NodeList, PostgresqlDatabase, fn

from yangyang_rec.bucket import PREFIX, ObjectKeyError, error_code, inspect_bucket, object_key
from yangyang_rec.index import Call, database, utcnow
from yangyang_rec.retention import due_at_utc, latest_due_recorded_on
from yangyang_rec.settings import Settings

KINDS = ("overdue", "missing", "orphan", "leftover", "stuck", "lifecycle")
LISTED_MAX = 200  # findings kept per kind for the table and JSON; counts are always exact
FRESH_FILE_S = 120  # a spool file this young may belong to a call whose row is being written


class AuditError(RuntimeError):
    """The audit could not finish (store unreachable, streams out of order): not a clean audit."""


@dataclass
class Finding:
    kind: str
    call_uuid: str
    where: str
    detail: str


@dataclass
class AuditReport:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    findings: list[Finding] = field(default_factory=list)
    rows: int = 0
    objects: int = 0
    spool_files: int = 0
    seconds: float = 0.0
    error: str = ""

    def add(self, kind: str, call_uuid: str, where: str, detail: str) -> None:
        self.counts[kind] += 1
        if self.counts[kind] <= LISTED_MAX:
            self.findings.append(Finding(kind, call_uuid, where, detail))

    @property
    def clean(self) -> bool:
        return not self.error and not any(self.counts.values())

    def lines(self) -> list[str]:
        out = [
            f"retention audit: {self.rows} index rows, {self.objects} objects, {self.spool_files} spool files "
            f"checked in {self.seconds:.1f} s",
        ]
        if self.error:
            out.append(f"  AUDIT INCOMPLETE: {self.error}")
        out.append("  " + "  ".join(f"{k} {v}" for k, v in self.counts.items()))
        if self.clean:
            out.append("  clean: every recording is where the index says, and nothing is kept past its year")
            return out
        width = max((len(f.where) for f in self.findings), default=10)
        width = min(width, 72)
        out.append(f"  {'KIND':<9}  {'CALL':<36}  {'WHERE':<{width}}  WHAT")
        for kind in KINDS:
            for f in (f for f in self.findings if f.kind == kind):
                out.append(f"  {f.kind:<9}  {f.call_uuid or '-':<36}  {f.where:<{width}}  {f.detail}")
            if self.counts[kind] > LISTED_MAX:
                out.append(f"  {kind:<9}  ... and {self.counts[kind] - LISTED_MAX} more")
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "clean": self.clean,
            "error": self.error,
            "counts": self.counts,
            "checked": {"rows": self.rows, "objects": self.objects, "spool_files": self.spool_files},
            "seconds": round(self.seconds, 3),
            "listed_max_per_kind": LISTED_MAX,
            "findings": [f.__dict__ for f in self.findings],
        }


# -- sorted streams ----------------------------------------------------------------


def _byte_order(column):
    """ORDER BY in byte order, as S3 lists keys (PostgreSQL's default collation is not)."""
    if isinstance(database.obj, PostgresqlDatabase):
        return NodeList((column, SQL('COLLATE "C"')))
    return column


def _checked_order(items: Iterator, name: str, key=lambda x: x[0]) -> Iterator:
    last = None
    for item in items:
        k = key(item)
        if last is not None and k < last:
            raise AuditError(f"{name} is not in byte order ({last!r} before {k!r}); cannot audit by streaming")
        last = k
        yield item


def _bucket_objects(client, bucket: str) -> Iterator[tuple[str, int]]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX):
        for obj in page.get("Contents", []):
            yield obj["Key"], obj["Size"]


def _spool_files(root: str) -> Iterator[tuple[str, float]]:
    """Every file under root, in byte order of the full path (directories sort as 'name/')."""
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return
    entries.sort(key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _spool_files(entry.path)
        else:
            try:
                yield entry.path, entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue


def _merge(left: Iterator, right: Iterator, key_left, key_right) -> Iterator[tuple[object, object]]:
    """Full outer merge-join of two sorted streams: yields (left or None, right or None)."""
    sentinel = object()
    a, b = next(left, sentinel), next(right, sentinel)
    while a is not sentinel or b is not sentinel:
        if b is sentinel or (a is not sentinel and key_left(a) < key_right(b)):
            yield a, None
            a = next(left, sentinel)
        elif a is sentinel or key_right(b) < key_left(a):
            yield None, b
            b = next(right, sentinel)
        else:
            yield a, b
            a, b = next(left, sentinel), next(right, sentinel)


# -- the passes --------------------------------------------------------------------


def _unconfirmed_upload(key: str) -> bool:
    """An object whose row is still queued: the daemon stopped between the upload and the index write.

    Not an orphan: the shipper adopts the object on its next pass, and 'stuck' reports the row if it lingers.
    """
    call_uuid = key.rsplit("/", 1)[-1].removesuffix(".wav")
    row = (
        Call.select(Call.upload_state, Call.destroyed_at, Call.department, Call.recorded_on)
        .where(Call.call_uuid == call_uuid)
        .first()
    )
    if row is None or row.destroyed_at is not None or row.upload_state not in ("pending", "uploading", "failed"):
        return False
    try:
        return object_key(row.department, row.recorded_on, call_uuid) == key
    except ObjectKeyError:
        return False


def _pass_bucket(report: AuditReport, client, settings: Settings, cutoff: dt.date, deep: bool) -> None:
    rows = (
        Call.select(Call.key, Call.call_uuid, Call.bytes, Call.sha256, Call.upload_state, Call.recorded_on,
                    Call.destroyed_at, Call.legal_hold)
        .where(Call.key != "")
        .order_by(_byte_order(Call.key))
        .tuples()
        .iterator()
    )
    objects = _checked_order(_bucket_objects(client, settings.s3_bucket), "bucket listing")
    rows = _checked_order(rows, "index keys")
    for row, obj in _merge(rows, objects, lambda r: r[0], lambda o: o[0]):
        if obj is not None:
            report.objects += 1
        if row is None:
            if not _unconfirmed_upload(obj[0]):
                report.add("orphan", "", obj[0], f"object ({obj[1]} bytes) without an index row")
            continue
        key, call_uuid, size, sha256, upload_state, recorded_on, destroyed_at, held = row
        if obj is None:
            if destroyed_at is None and upload_state == "uploaded":
                report.add("missing", call_uuid, key, "indexed as uploaded but absent from the bucket")
            continue
        if destroyed_at is not None:
            report.add("overdue", call_uuid, key, f"destroyed {destroyed_at:%Y-%m-%d} but the object is still there")
            continue
        if recorded_on <= cutoff and not held:
            report.add("overdue", call_uuid, key, f"due since {due_at_utc(recorded_on):%Y-%m-%d %H:%M} UTC, still in the bucket")
        if obj[1] != size:
            report.add("missing", call_uuid, key, f"object has {obj[1]} bytes, the index says {size}")
        elif deep:
            try:
                meta = client.head_object(Bucket=settings.s3_bucket, Key=key).get("Metadata", {})
            except ClientError as exc:
                report.add("missing", call_uuid, key, f"cannot read the object: {error_code(exc)}")
                continue
            if meta.get("sha256") != sha256:
                report.add("missing", call_uuid, key, "object SHA-256 differs from the index")


def _pass_spool(report: AuditReport, settings: Settings, cutoff: dt.date) -> None:
    root = os.path.abspath(settings.spool_dir)
    rows = (
        Call.select(Call.recording_path, Call.call_uuid, Call.record_state, Call.upload_state, Call.recorded_on,
                    Call.destroyed_at, Call.legal_hold)
        .where(Call.recording_path != "")
        .order_by(_byte_order(Call.recording_path))
        .tuples()
        .iterator()
    )
    files = _checked_order(_spool_files(root), "spool walk")
    rows = _checked_order(rows, "index recording paths")
    fresh = time.time() - FRESH_FILE_S
    for row, file in _merge(rows, files, lambda r: r[0], lambda f: f[0]):
        if file is not None:
            report.spool_files += 1
        if row is None:
            if file[1] < fresh:
                report.add("orphan", "", file[0], "spool file without an index row")
            continue
        path, call_uuid, record_state, upload_state, recorded_on, destroyed_at, held = row
        if file is None:
            if destroyed_at is None and record_state != "recording" and upload_state in ("pending", "uploading", "failed"):
                report.add("missing", call_uuid, path, "spool file gone and never uploaded")
            continue
        if recorded_on <= cutoff and not held:
            report.add("overdue", call_uuid, path, f"due since {due_at_utc(recorded_on):%Y-%m-%d %H:%M} UTC, still in the spool")
        elif upload_state == "uploaded":
            report.add("leftover", call_uuid, path, "uploaded, but the spool copy was not freed")


def _pass_index(report: AuditReport, settings: Settings, now: dt.datetime, cutoff: dt.date) -> None:
    personal_left = (Call.caller_number != "") | (Call.caller_name != "") | (Call.callee_number != "") | (
        Call.recording_path != ""
    )
    overdue = (
        Call.select(Call.call_uuid, Call.recorded_on, Call.destroyed_at)
        .where((Call.recorded_on <= cutoff) & ~Call.legal_hold & (Call.destroyed_at.is_null() | personal_left))
        .order_by(Call.id)
        .tuples()
        .iterator()
    )
    for call_uuid, recorded_on, destroyed_at in overdue:
        what = "personal data not erased" if destroyed_at else "not destroyed (run: yangyang-rec purge)"
        report.add("overdue", call_uuid, "index", f"due since {due_at_utc(recorded_on):%Y-%m-%d %H:%M} UTC, {what}")

    limit = now - dt.timedelta(minutes=settings.stuck_after_minutes)
    stuck = (
        Call.select(Call.call_uuid, Call.upload_state, Call.upload_attempts, Call.upload_error,
                    fn.COALESCE(Call.ended_at, Call.answered_at))
        .where(
            Call.upload_state.in_(("pending", "uploading", "failed"))
            & Call.record_state.in_(("completed", "partial", "failed"))
            & (Call.recording_path != "")
            & Call.destroyed_at.is_null()
            & (fn.COALESCE(Call.ended_at, Call.answered_at) < limit)
        )
        .order_by(Call.answered_at)
        .tuples()
        .iterator()
    )
    for call_uuid, state, attempts, error, since in stuck:
        if isinstance(since, str):  # SQLite hands COALESCE back as text
            since = dt.datetime.fromisoformat(since)
        minutes = int((now - since).total_seconds() // 60)
        detail = f"{state} for {minutes} min, {attempts} attempt(s)" + (f", last error: {error[:120]}" if error else "")
        report.add("stuck", call_uuid, "index", detail)
    report.rows = Call.select().count()


def audit(settings: Settings, client, *, now: dt.datetime | None = None, deep: bool = False) -> AuditReport:
    """Run every pass; a store that cannot be read makes the report incomplete (never clean)."""
    started = time.monotonic()
    now = now or utcnow()
    cutoff = latest_due_recorded_on(now)
    report = AuditReport()
    bucket = inspect_bucket(client, settings)
    if bucket.error or not bucket.exists:
        report.error = bucket.problems[0]
    else:
        for feature in bucket.features:
            if not feature.ok:
                report.add("lifecycle", "", settings.s3_bucket, f"{feature.name}: {feature.detail}")
        try:
            _pass_bucket(report, client, settings, cutoff, deep)
        except (BotoCoreError, ClientError) as exc:
            report.error = f"cannot list bucket {settings.s3_bucket}: {exc}"
        except AuditError as exc:
            report.error = str(exc)
    try:
        _pass_spool(report, settings, cutoff)
    except AuditError as exc:
        report.error = report.error or str(exc)
    _pass_index(report, settings, now, cutoff)
    report.seconds = time.monotonic() - started
    return report
