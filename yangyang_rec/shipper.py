"""Uploads finished recordings from the index queue to the bucket, verifies them, frees the spool.

The index is the queue: a row is claimed with one atomic UPDATE (a lease: who and when), so
two daemons on one index never upload the same row, and a daemon killed mid-upload leaves a
lease that expires and is taken over. Before uploading, the key is looked up: an object with
the same SHA-256 already there (the PUT finished but the daemon died before writing the row)
is adopted instead of uploaded again. The local file is deleted only after the row says
'uploaded' with key, ETag and version.

gevent only switches on I/O, so hashing and every boto3 call run in a small thread pool:
the greenlet that ships waits, while the event loop keeps serving the event socket.

A store-wide failure (connection refused, 5xx, bucket gone, credentials) is an outage: the
shipper stops, keeps the queue order (rows get no per-row backoff) and probes the bucket with
backoff, reporting backlog and spool size; a row-specific failure gets exponential backoff
with jitter and is retried forever, louder after FAILED_AFTER_ATTEMPTS.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import random
import secrets
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import gevent
import structlog
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError
from gevent.event import Event
from gevent.threadpool import ThreadPool
from peewee import fn

from yangyang_rec.bucket import SSE, ObjectKeyError, error_code, make_client, object_key
from yangyang_rec.index import Call, utcnow
from yangyang_rec.retention import due_at_utc, latest_due_recorded_on, retain_until
from yangyang_rec.settings import Settings

log = structlog.get_logger(__name__)

MB = 1024 * 1024
HASH_CHUNK = 1 * MB
FINAL_RECORD_STATES = ("completed", "partial", "failed")
WAITING_UPLOAD_STATES = ("pending", "uploading", "failed")
LEASE = dt.timedelta(minutes=30)
FAILED_AFTER_ATTEMPTS = 8
BACKOFF_BASE_S = 5.0
BACKOFF_CAP_S = 15 * 60.0
OUTAGE_PROBE_CAP_S = 60.0
STORE_WIDE_CODES = frozenset(
    {"NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "RequestTimeTooSkewed",
     "SlowDown", "ServiceUnavailable", "InternalError"}
)


class RowProblem(Exception):
    """Something wrong with this one recording (file gone, changed, landed wrong): back off this row."""


class StoreUnavailable(Exception):
    """The bucket cannot be used at all right now: stop and probe, keep the queue order."""


def backoff_seconds(attempts: int, rng: random.Random) -> float:
    """Exponential backoff with jitter (50-100 % of 5 s * 2^(n-1)), capped at 15 minutes."""
    base = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1))
    return base * (0.5 + rng.random() / 2)


def hash_file(path: Path, part_size: int = 0) -> tuple[int, str, str]:
    """(bytes, sha256 hex, composite) of a file, read in chunks. Run it in a thread: hashlib releases the GIL.

    `composite` is what S3 reports as ChecksumSHA256 for a multipart upload in parts of
    `part_size` (base64 SHA-256 of the parts' SHA-256s), '' when it would be a single PUT.
    """
    digest = hashlib.sha256()
    parts: list[bytes] = []
    part = hashlib.sha256()
    in_part = size = 0
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if part_size:
                part.update(chunk)
                in_part += len(chunk)
                if in_part >= part_size:
                    parts.append(part.digest())
                    part, in_part = hashlib.sha256(), 0
    if in_part:
        parts.append(part.digest())
    composite = ""
    if part_size and size >= part_size:
        composite = base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode()
    return size, digest.hexdigest(), composite


def spool_bytes(spool_dir: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(spool_dir):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _root_cause(exc: BaseException) -> BaseException:
    """s3transfer wraps boto errors (S3UploadFailedError); find the boto error underneath."""
    seen = exc
    while seen is not None:
        if isinstance(seen, (BotoCoreError, ClientError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


def is_store_wide(exc: BaseException) -> bool:
    exc = _root_cause(exc)
    if isinstance(exc, BotoCoreError):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 or error_code(exc) in STORE_WIDE_CODES
    return False


def _describe(exc: BaseException) -> str:
    cause = _root_cause(exc)
    return f"{type(cause).__name__}: {cause}"[:500]


@dataclass
class DrainResult:
    uploaded: int = 0
    adopted: int = 0
    failed: int = 0
    outage: bool = False
    outage_error: str = ""
    backlog: int = 0
    backlog_bytes: int = 0
    uploaded_bytes: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "errors"} | {"errors": self.errors[:20]}


class Shipper:
    """Drains the upload queue in the index. One instance per daemon; greenlet-friendly."""

    def __init__(
        self,
        settings: Settings,
        client=None,
        *,
        lease: dt.timedelta = LEASE,
        report_every: float = 60.0,
        poll_every: float = 2.0,
        worker_id: str | None = None,
        rng: random.Random | None = None,
    ):
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.client = client or make_client(settings)
        self.lease = lease
        self.report_every = report_every
        self.poll_every = poll_every
        self.host = f"{settings.node}@{socket.gethostname()}"
        self.worker_id = worker_id or f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        self.rng = rng or random.Random()
        self.pool = ThreadPool(settings.upload_concurrency + 1)
        threshold = settings.multipart_threshold_mb * MB
        # No s3transfer threads: under the daemon's monkey.patch_all() they are greenlets inside a
        # pool thread, and about one upload in a hundred hung there for good. Each upload already
        # runs in its own pool thread; its parts go one after another.
        self.transfer = TransferConfig(
            multipart_threshold=threshold, multipart_chunksize=threshold, use_threads=False
        )
        self.outage_error = ""
        self._wake = Event()
        self._last_report = 0.0

    # -- helpers ---------------------------------------------------------------

    def _in_thread(self, func, *args, **kwargs):
        """Run blocking work (hashing, boto3) off the event loop; this greenlet waits, others run.

        Errors come back as values and are raised here: the thread pool would otherwise print
        each one as a traceback on stderr.
        """

        def call():
            try:
                return True, func(*args, **kwargs)
            except Exception as exc:
                return False, exc

        ok, value = self.pool.spawn(call).get()
        if not ok:
            raise value
        return value

    def wake(self) -> None:
        """Called by the recorder when a row becomes final: ship now instead of at the next poll."""
        self._wake.set()

    def _claimable(self, now: dt.datetime):
        waiting = Call.upload_state.in_(("pending", "failed")) & (
            Call.next_attempt_at.is_null() | (Call.next_attempt_at <= now)
        )
        stale = (Call.upload_state == "uploading") & (Call.upload_claimed_at < now - self.lease)
        return (
            (waiting | stale)
            & Call.record_state.in_(FINAL_RECORD_STATES)
            & (Call.recording_path != "")
            & Call.destroyed_at.is_null()
            # A recording already due is destroyed by the purge, never shipped.
            & (Call.recorded_on > latest_due_recorded_on(now))
        )

    def claim_next(self) -> Call | None:
        """Take the oldest claimable row with one atomic UPDATE; None when nothing is waiting."""
        while True:
            now = utcnow()
            cond = self._claimable(now)
            candidates = list(
                Call.select(Call.id, Call.upload_state, Call.upload_attempts)
                .where(cond)
                .order_by(Call.answered_at, Call.id)
                .limit(8)
                .tuples()
            )
            if not candidates:
                return None
            for row_id, state, attempts in candidates:
                taken = (
                    Call.update(upload_state="uploading", upload_claimed_by=self.worker_id, upload_claimed_at=now)
                    .where((Call.id == row_id) & cond)
                    .execute()
                )
                if taken == 1:
                    row = Call.get_by_id(row_id)
                    # Never claimed before: no earlier PUT can exist, so the HEAD before uploading is skipped.
                    row.first_attempt = state == "pending" and attempts == 0
                    if row.upload_claimed_by != self.worker_id:  # pragma: no cover - defensive
                        continue
                    return row
            # Every candidate was taken by another shipper between SELECT and UPDATE: look again.

    def release_dead_leases(self) -> int:
        """Free leases held by a process on this host that no longer exists (killed mid-upload).

        Without this a restarted daemon would wait for the lease to expire. Leases of other
        hosts, or of a pid that still exists, are left to expire.
        """
        released = 0
        mine = (Call.upload_state == "uploading") & Call.upload_claimed_by.startswith(self.host + ":")
        for row_id, holder in Call.select(Call.id, Call.upload_claimed_by).where(mine).tuples():
            pid = holder[len(self.host) + 1 :].split(":")[0]
            if not pid.isdigit() or int(pid) == os.getpid() or _process_exists(int(pid)):
                continue
            released += (
                Call.update(
                    upload_state="pending",
                    upload_claimed_by="",
                    upload_claimed_at=None,
                    upload_attempts=Call.upload_attempts + 1,
                    upload_error="the uploading process died (killed or crashed)",
                )
                .where((Call.id == row_id) & (Call.upload_claimed_by == holder))
                .execute()
            )
        if released:
            log.warning("upload.leases_released", count=released, reason="their process is gone")
        return released

    def backlog(self) -> tuple[int, int, dt.datetime | None]:
        """(rows waiting, their bytes, oldest answered_at) among finished recordings not yet uploaded."""
        count, total, oldest = (
            Call.select(fn.COUNT(Call.id), fn.COALESCE(fn.SUM(Call.bytes), 0), fn.MIN(Call.answered_at))
            .where(
                Call.upload_state.in_(WAITING_UPLOAD_STATES)
                & Call.record_state.in_(FINAL_RECORD_STATES)
                & (Call.recording_path != "")
                & Call.destroyed_at.is_null()
            )
            .tuples()
            .get()
        )
        return int(count), int(total or 0), oldest

    def report(self, force: bool = False) -> None:
        """Log backlog and spool size, every report_every seconds while there is a backlog or an outage."""
        now = time.monotonic()
        if not force and now - self._last_report < self.report_every:
            return
        count, total, oldest = self.backlog()
        if not count and not self.outage_error and not force:
            return
        self._last_report = now
        spool = self.settings.spool_dir
        used = self._in_thread(spool_bytes, spool) if spool.exists() else 0
        disk = shutil.disk_usage(spool) if spool.exists() else None
        fields = {
            "backlog_count": count,
            "backlog_bytes": total,
            "oldest": oldest.isoformat() + "Z" if oldest else None,
            "spool_bytes": used,
            "spool_disk_used_percent": round(100 * disk.used / disk.total, 1) if disk else None,
        }
        if self.outage_error:
            log.warning("upload.backlog", bucket=self.bucket, outage=self.outage_error, **fields)
        else:
            log.info("upload.backlog", bucket=self.bucket, **fields)

    # -- one row ---------------------------------------------------------------

    def _head(self, key: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def _metadata(self, row: Call, digest: str) -> dict[str, str]:
        return {
            "call-uuid": row.call_uuid,
            "line": quote(row.line, safe=""),
            "department": row.department,
            "sha256": digest,
            "recorded-at": row.answered_at.replace(microsecond=0).isoformat() + "Z",
            "recorded-on": row.recorded_on.isoformat(),
        }

    def _upload(self, row: Call, path: Path, key: str, digest: str) -> dict | None:
        """Store the file at `key`. Returns the PUT's reply when the store itself confirmed the bytes, else None.

        A file below the multipart threshold goes in one PUT carrying the SHA-256 already computed
        (botocore does not hash it again). S3 checks the body against it and refuses a mismatch; a
        reply echoing it confirms the store did, so no HEAD is needed to verify. A store that does
        not echo it gets the HEAD.
        """
        extra: dict[str, object] = {
            "ServerSideEncryption": SSE,
            "ContentType": "audio/wav",
            "Metadata": self._metadata(row, digest),
        }
        if self.settings.s3_object_lock:
            extra["ObjectLockMode"] = "COMPLIANCE"
            extra["ObjectLockRetainUntilDate"] = due_at_utc(row.recorded_on).replace(tzinfo=dt.UTC)
        size = path.stat().st_size
        if size >= self.transfer.multipart_threshold:
            extra["ChecksumAlgorithm"] = "SHA256"
            self.client.upload_file(str(path), self.bucket, key, ExtraArgs=extra, Config=self.transfer)
            return None
        whole = base64.b64encode(bytes.fromhex(digest)).decode()
        with open(path, "rb") as f:
            reply = self.client.put_object(
                Bucket=self.bucket, Key=key, Body=f, ContentLength=size,
                ChecksumAlgorithm="SHA256", ChecksumSHA256=whole, **extra,
            )
        return reply if reply.get("ChecksumSHA256") == whole else None

    @staticmethod
    def _landed_problem(head: dict, size: int, digest: str, composite: str | None) -> str:
        """'' when the object is the file: same size, same SHA-256 (metadata and the store's checksum).

        `composite` None: the file is gone, so a multipart checksum cannot be recomputed; skip it.
        """
        if head.get("ContentLength") != size:
            return f"object has {head.get('ContentLength')} bytes, file has {size}"
        meta = head.get("Metadata", {}).get("sha256", "")
        if meta != digest:
            return f"object sha256 metadata {meta[:12]!r}... differs from the file's {digest[:12]}..."
        checksum = head.get("ChecksumSHA256", "").split("-")[0]
        whole = base64.b64encode(bytes.fromhex(digest)).decode()
        if checksum and composite is not None and checksum not in (whole, composite):
            return "the store's ChecksumSHA256 differs from the file's SHA-256"
        return ""

    def ship(self, row: Call) -> str:
        """Upload one claimed row; returns 'uploaded' or 'adopted'; raises RowProblem or StoreUnavailable."""
        try:
            key = object_key(row.department, row.recorded_on, row.call_uuid)
        except ObjectKeyError as exc:
            raise RowProblem(str(exc)) from None
        path = Path(row.recording_path)
        try:
            head = None if getattr(row, "first_attempt", False) else self._in_thread(self._head, key)
            if path.is_file():
                size, digest, composite = self._in_thread(hash_file, path, self.transfer.multipart_chunksize)
                if row.sha256 and digest != row.sha256:
                    raise RowProblem(f"spool file {path} changed since it was indexed (sha256 differs)")
                if row.bytes is not None and size != row.bytes:
                    raise RowProblem(f"spool file {path} has {size} bytes, the index says {row.bytes}")
            elif head and row.sha256 and row.bytes is not None:
                # The file went after an earlier run's PUT: the object is all there is; check what we can.
                size, digest, composite = row.bytes, row.sha256, None
            else:
                raise RowProblem(f"spool file {path} is missing and the bucket has no copy")
            if head and not self._landed_problem(head, size, digest, composite):
                outcome = "adopted"  # an earlier run's PUT completed; do not store a second version
            else:
                if composite is None:
                    raise RowProblem(f"spool file {path} is missing and the object at {key} differs from the index")
                if head:
                    log.warning("upload.replacing", call=row.call_uuid, key=key, reason="object differs from file")
                head = self._in_thread(self._upload, row, path, key, digest)
                if head is None:  # the store did not confirm the bytes in its reply: look at what landed
                    head = self._in_thread(self._head, key)
                    if head is None:
                        raise RowProblem(f"object {key} not found right after upload")
                    problem = self._landed_problem(head, size, digest, composite)
                    if problem:
                        raise RowProblem(f"object {key} did not land intact: {problem}")
                outcome = "uploaded"
        except (BotoCoreError, ClientError, Exception) as exc:
            if isinstance(exc, RowProblem):
                raise
            if is_store_wide(exc):
                raise StoreUnavailable(_describe(exc)) from exc
            raise RowProblem(_describe(exc)) from exc

        Call.update(
            upload_state="uploaded",
            bucket=self.bucket,
            key=key,
            etag=str(head.get("ETag", "")).strip('"'),
            version_id=head.get("VersionId") or "",
            uploaded_at=utcnow(),
            retain_until=retain_until(row.recorded_on),
            bytes=size,
            sha256=digest,
            upload_error="",
            upload_claimed_by="",
            upload_claimed_at=None,
            next_attempt_at=None,
        ).where(Call.id == row.id).execute()
        # Only now, with the row saying where the recording is, the local copy goes. In the pool:
        # unlinking a large file took 21 ms on the bench's disk, a stall of the event loop if done here.
        try:
            self._in_thread(path.unlink)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("upload.spool_not_freed", call=row.call_uuid, path=str(path), error=str(exc))
        log.info(
            "upload.done" if outcome == "uploaded" else "upload.adopted",
            call=row.call_uuid, key=key, size_bytes=size, version=head.get("VersionId") or "",
        )
        return outcome

    def _record_failure(self, row: Call, error: str, store_wide: bool) -> None:
        attempts = row.upload_attempts + 1
        state = "failed" if attempts >= FAILED_AFTER_ATTEMPTS else "pending"
        # In an outage the row keeps its place in the queue: no per-row backoff.
        next_at = None if store_wide else utcnow() + dt.timedelta(seconds=backoff_seconds(attempts, self.rng))
        Call.update(
            upload_state=state,
            upload_attempts=attempts,
            upload_error=error[:500],
            next_attempt_at=next_at,
            upload_claimed_by="",
            upload_claimed_at=None,
        ).where((Call.id == row.id) & (Call.upload_claimed_by == self.worker_id)).execute()
        event = log.error if state == "failed" or not store_wide else log.warning
        event(
            "upload.failed", call=row.call_uuid, attempt=attempts, error=error, state=state,
            retry_at=next_at.isoformat() + "Z" if next_at else "when the bucket is back",
        )

    # -- the queue -------------------------------------------------------------

    def drain_once(self, stop_event: Event | None = None) -> DrainResult:
        """Ship everything claimable now with upload_concurrency workers; stop at an outage."""
        result = DrainResult()
        started = time.monotonic()
        self.release_dead_leases()

        def worker() -> None:
            while not result.outage and not (stop_event and stop_event.is_set()):
                row = self.claim_next()
                if row is None:
                    return
                try:
                    outcome = self.ship(row)
                except StoreUnavailable as exc:
                    if not result.outage:
                        result.outage, result.outage_error = True, str(exc)
                    self._record_failure(row, str(exc), store_wide=True)
                    return
                except RowProblem as exc:
                    result.failed += 1
                    result.errors.append(f"{row.call_uuid}: {exc}")
                    self._record_failure(row, str(exc), store_wide=False)
                    continue
                if outcome == "adopted":
                    result.adopted += 1
                else:
                    result.uploaded += 1
                    result.uploaded_bytes += row.bytes or 0

        workers = [gevent.spawn(worker) for _ in range(self.settings.upload_concurrency)]
        gevent.joinall(workers, raise_error=True)
        if result.outage and not self.outage_error:
            log.error("upload.outage", bucket=self.bucket, error=result.outage_error)
        self.outage_error = result.outage_error
        result.backlog, result.backlog_bytes, _ = self.backlog()
        result.seconds = time.monotonic() - started
        return result

    def probe(self) -> bool:
        """True when the bucket answers again."""
        try:
            self._in_thread(self.client.head_bucket, Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            self.outage_error = _describe(exc)
            return False
        log.info("upload.bucket_back", bucket=self.bucket)
        self.outage_error = ""
        return True

    def run_forever(self, stop_event: Event) -> None:
        """The shipper greenlet: drain, wait for a wake-up or the poll interval, repeat until stopped."""
        delay = 1.0
        while not stop_event.is_set():
            if self.outage_error and not self.probe():
                self.report()
                gevent.wait([stop_event], timeout=delay)
                delay = min(delay * 2, OUTAGE_PROBE_CAP_S)
                continue
            delay = 1.0
            self._wake.clear()
            try:
                self.drain_once(stop_event)
            except Exception:  # the daemon must keep recording whatever the shipper hits
                log.exception("upload.crashed")
                gevent.wait([stop_event], timeout=self.poll_every)
            self.report()
            gevent.wait([stop_event, self._wake], timeout=self.poll_every, count=1)
        self.pool.kill()
