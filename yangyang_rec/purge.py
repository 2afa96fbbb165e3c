"""Destroys what is due: every object version, the spool copy, the row's personal data; registers it.

Due means now >= due_at_utc(recorded_on) (retention.py), decided from the recording date
alone, so an upload delayed by an outage is destroyed on the same day as any other. The
purge does not rely on the bucket's lifecycle rule (which may be missing on some stores and
is set later on purpose); it is meant to run daily.

Rows under legal hold are skipped and listed. A version the store refuses to delete (object
lock still in force) is reported and the row kept, so the next run tries again and the audit
shows it. The destruction register holds no personal data: uuid, key, size, hash, dates, rule.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from yangyang_rec.bucket import ObjectKeyError, error_code, object_key
from yangyang_rec.index import Call, Destruction, database, utcnow
from yangyang_rec.retention import RULE_TEXT, due_at_utc, latest_due_recorded_on
from yangyang_rec.settings import Settings

log = structlog.get_logger(__name__)

BATCH = 200
LISTED_MAX = 1000  # items kept for the report per outcome; counts are always exact
REGISTER_COLUMNS = ("call_uuid", "key", "bytes", "sha256", "recorded_on", "destroyed_at", "rule")
ERASED = {"caller_number": "", "caller_name": "", "callee_number": "", "recording_path": ""}


class PurgeError(RuntimeError):
    """The purge cannot go on (store unreachable): nothing half-done is recorded as destroyed."""


@dataclass
class PurgeItem:
    call_uuid: str
    key: str
    recorded_on: dt.date
    outcome: str  # destroyed | would destroy | held | refused | in upload | erased again
    detail: str = ""
    versions: int = 0


@dataclass
class PurgeResult:
    dry_run: bool
    cutoff: dt.date
    counts: dict[str, int] = field(default_factory=dict)
    items: list[PurgeItem] = field(default_factory=list)
    versions_deleted: int = 0
    spool_files_deleted: int = 0

    def add(self, item: PurgeItem) -> None:
        self.counts[item.outcome] = self.counts.get(item.outcome, 0) + 1
        if self.counts[item.outcome] <= LISTED_MAX:
            self.items.append(item)

    @property
    def clean(self) -> bool:
        return not self.counts.get("refused") and not self.counts.get("in upload")

    def lines(self) -> list[str]:
        verb = "would destroy" if self.dry_run else "destroyed"
        out = [
            f"purge{' (dry run: nothing changed)' if self.dry_run else ''}: recordings made on or before "
            f"{self.cutoff} (KST) are due",
            f"  {verb}: {self.counts.get(verb, 0)} recordings"
            + ("" if self.dry_run else f", {self.versions_deleted} object versions, {self.spool_files_deleted} spool files"),
        ]
        if self.dry_run:  # the list right under its own heading, before the skipped ones
            out += [f"    {i.call_uuid}  recorded {i.recorded_on}  {i.key or '(never uploaded)'}  {i.detail}"
                    for i in self.items if i.outcome == verb]
        for outcome, label in (
            ("erased again", "personal data erased again on already destroyed rows"),
            ("held", "skipped: under legal hold"),
            ("refused", "NOT destroyed: the store refused (object lock?) or the file is outside the spool"),
            ("in upload", "NOT destroyed yet: being uploaded right now; run the purge again"),
        ):
            if self.counts.get(outcome):
                out.append(f"  {label}: {self.counts[outcome]}")
                out += [
                    f"    {i.call_uuid}  recorded {i.recorded_on}  {i.key or '-'}  {i.detail}"
                    for i in self.items if i.outcome == outcome
                ]
        return out


def _versions(client, bucket: str, key: str) -> list[dict]:
    """Every version and delete marker of exactly `key`."""
    found: list[dict] = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
            if entry["Key"] == key:
                found.append({"Key": key, "VersionId": entry.get("VersionId") or "null"})
    return found


def _delete_versions(client, bucket: str, versions: list[dict]) -> list[str]:
    """Delete the versions; returns the store's refusals ('' list when all went)."""
    refused: list[str] = []
    for start in range(0, len(versions), 1000):
        chunk = versions[start : start + 1000]
        resp = client.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
        refused += [f"{e.get('VersionId', '')}: {e.get('Code')} {e.get('Message', '')}".strip() for e in resp.get("Errors", [])]
    return refused


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, os.path.abspath(path)]) == root


def _due_rows(cutoff: dt.date, after_id: int):
    personal_left = (Call.caller_number != "") | (Call.caller_name != "") | (Call.callee_number != "") | (
        Call.recording_path != ""
    )
    return (
        Call.select()
        .where((Call.recorded_on <= cutoff) & (Call.destroyed_at.is_null() | personal_left) & (Call.id > after_id))
        .order_by(Call.id)
        .limit(BATCH)
    )


def purge(settings: Settings, client, *, now: dt.datetime | None = None, dry_run: bool = False,
          lease: dt.timedelta = dt.timedelta(minutes=30)) -> PurgeResult:
    """Destroy every due recording not under legal hold. Raises PurgeError if the store is unreachable."""
    now = now or utcnow()
    cutoff = latest_due_recorded_on(now)
    result = PurgeResult(dry_run, cutoff)
    spool = os.path.abspath(settings.spool_dir)
    bucket = settings.s3_bucket
    last_id = 0
    while True:
        rows = list(_due_rows(cutoff, last_id))
        if not rows:
            break
        last_id = rows[-1].id
        for row in rows:
            item = _purge_one(row, settings, client, bucket, spool, now, dry_run, lease)
            result.add(item)
            if item.outcome == "destroyed":
                result.versions_deleted += item.versions
                result.spool_files_deleted += "spool file" in item.detail
    log.info("purge.done", dry_run=dry_run, cutoff=str(cutoff), **{k.replace(" ", "_") + "_count": v
                                                                   for k, v in result.counts.items()})
    return result


def _purge_one(row: Call, settings: Settings, client, bucket: str, spool: str, now: dt.datetime,
               dry_run: bool, lease: dt.timedelta) -> PurgeItem:
    item = PurgeItem(row.call_uuid, row.key, row.recorded_on, "destroyed")
    if row.destroyed_at is not None:  # destroyed earlier, but personal data came back or stayed
        item.outcome = "erased again"
        if not dry_run:
            Call.update(**ERASED).where(Call.id == row.id).execute()
        return item
    if row.legal_hold:
        item.outcome, item.detail = "held", f"due since {due_at_utc(row.recorded_on):%Y-%m-%d %H:%M} UTC"
        return item
    if row.upload_state == "uploading" and row.upload_claimed_at and row.upload_claimed_at > now - lease:
        item.outcome, item.detail = "in upload", f"claimed by {row.upload_claimed_by}"
        return item
    if not item.key:
        try:
            item.key = object_key(row.department, row.recorded_on, row.call_uuid)
        except ObjectKeyError:
            item.key = ""  # such a row was never uploaded: nothing in the bucket under any key

    try:
        versions = _versions(client, bucket, item.key) if item.key else []
    except (BotoCoreError, ClientError) as exc:
        if isinstance(exc, ClientError) and error_code(exc) == "NoSuchBucket":
            versions = []
        else:
            raise PurgeError(f"cannot list bucket {bucket}: {exc}") from exc
    path = row.recording_path
    has_file = bool(path) and os.path.lexists(path)
    item.versions = len(versions)
    if has_file and not _inside(spool, path):
        item.outcome = "refused"
        item.detail = f"recording path {path} is outside the spool {spool}; delete it by hand, then purge again"
        return item
    if dry_run:
        item.outcome = "would destroy"
        item.detail = f"{len(versions)} object version(s)" + (", spool file" if has_file else "")
        return item

    if versions:
        try:
            refused = _delete_versions(client, bucket, versions)
        except (BotoCoreError, ClientError) as exc:
            raise PurgeError(f"cannot delete from bucket {bucket}: {exc}") from exc
        if refused:
            item.outcome = "refused"
            item.detail = f"store refused {len(refused)} of {len(versions)} version(s): {refused[0]}"
            log.error("purge.refused", call=row.call_uuid, key=item.key, reason=refused[0])
            return item
    details = [f"{len(versions)} object version(s)"]
    if has_file:
        Path(path).unlink(missing_ok=True)
        details.append("spool file")
    item.detail = ", ".join(details)
    with database.atomic():
        Call.update(destroyed_at=now, **ERASED).where(Call.id == row.id).execute()
        Destruction.create(
            call_uuid=row.call_uuid,
            key=item.key if versions or row.key else "",
            bytes=row.bytes,
            sha256=row.sha256,
            recorded_on=row.recorded_on,
            destroyed_at=now,
            rule=RULE_TEXT,
        )
    log.info("purge.destroyed", call=row.call_uuid, key=item.key, versions_count=len(versions), spool_file=has_file)
    return item


def export_register(out) -> int:
    """Write the destruction register as CSV to the open text file `out`; returns the row count."""
    writer = csv.writer(out)
    writer.writerow(REGISTER_COLUMNS)
    count = 0
    for r in Destruction.select().order_by(Destruction.destroyed_at, Destruction.id).iterator():
        writer.writerow([
            r.call_uuid, r.key, "" if r.bytes is None else r.bytes, r.sha256, r.recorded_on.isoformat(),
            r.destroyed_at.replace(microsecond=0).isoformat() + "Z", r.rule,
        ])
        count += 1
    return count
