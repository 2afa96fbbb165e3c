"""The bucket: boto3 client from settings, object keys, and the idempotent bucket setup.

Setup = versioning, a lifecycle rule expiring `recordings/` after LIFECYCLE_DAYS (never
before the calendar year is over, see retention.py), public access blocked, default
encryption (SSE-S3), and optionally object lock in compliance mode. Stores differ: one that
answers NotImplemented or MalformedXML for a feature gets a plain message naming the
feature, and the report lists it as missing; the purge destroys what is due whatever the
bucket can or cannot do, so a missing lifecycle rule never means a recording outlives its year.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from yangyang_rec.retention import LIFECYCLE_DAYS
from yangyang_rec.settings import Settings

log = structlog.get_logger(__name__)

PREFIX = "recordings/"
RULE_ID = "yangyang-rec-retention"
SSE = "AES256"
LIFECYCLE_RULE = {
    "ID": RULE_ID,
    "Filter": {"Prefix": PREFIX},
    "Status": "Enabled",
    "Expiration": {"Days": LIFECYCLE_DAYS},
    # Versions only become noncurrent when the rule above expires them (or someone deletes):
    # they are gone one day later. Protection against early deletion is object lock's job.
    "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
}
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
UNSUPPORTED_CODES = frozenset({"NotImplemented", "MalformedXML", "NotSupported", "XNotImplemented", "UnsupportedOperation"})
NOT_FOUND_CODES = frozenset(
    {
        "NoSuchLifecycleConfiguration",
        "NoSuchPublicAccessBlockConfiguration",
        "ServerSideEncryptionConfigurationNotFoundError",
        "ObjectLockConfigurationNotFoundError",
        "NoSuchBucketPolicy",
    }
)

DEPARTMENT_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}\Z")
CALL_UUID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}\Z")


class ObjectKeyError(ValueError):
    """A department or call uuid that must not become part of an object key."""


def object_key(department: str, recorded_on: dt.date, call_uuid: str) -> str:
    """recordings/<department>/<YYYY>/<MM>/<DD>/<call uuid>.wav, the date in KST.

    Both names are checked against a strict character set, so no '/', '..', space or
    control character from channel data can reach the key.
    """
    if not DEPARTMENT_RE.match(department or ""):
        raise ObjectKeyError(f"department {department!r} is not a plain name (letters, digits, '-', '_')")
    if not CALL_UUID_RE.match(call_uuid or ""):
        raise ObjectKeyError(f"call uuid {call_uuid!r} is not a plain uuid (letters, digits, '-')")
    return f"{PREFIX}{department}/{recorded_on:%Y/%m/%d}/{call_uuid}.wav"


def make_client(settings: Settings, max_attempts: int = 3, connect_timeout: float = 5.0):
    """A boto3 S3 client for the store in the settings. Credentials go to boto3 only, never to logs."""
    config = Config(
        s3={"addressing_style": settings.s3_addressing_style},
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=120,
        max_pool_connections=max(10, settings.upload_concurrency * 4),
        # Checksums only where we ask for them (SHA-256 on uploads): many S3-compatible stores
        # reject the CRC32 trailers newer boto3 adds to every request by default.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    kwargs: dict[str, object] = {"region_name": settings.s3_region or None, "config": config}
    if settings.s3_endpoint_url:
        kwargs["endpoint_url"] = settings.s3_endpoint_url
    if settings.s3_access_key_id:
        kwargs["aws_access_key_id"] = settings.s3_access_key_id
        kwargs["aws_secret_access_key"] = settings.s3_secret_access_key
    return boto3.session.Session().client("s3", **kwargs)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return type(exc).__name__


def is_unsupported(exc: BaseException) -> bool:
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error_code(exc) in UNSUPPORTED_CODES or status == 501


@dataclass
class Feature:
    name: str
    ok: bool
    detail: str
    supported: bool = True


@dataclass
class BucketReport:
    bucket: str
    endpoint: str
    exists: bool = False
    features: list[Feature] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.exists and not self.error and all(f.ok for f in self.features)

    @property
    def missing_features(self) -> list[str]:
        """Features the store does not implement: the purge covers them."""
        return [f.name for f in self.features if not f.supported]

    @property
    def problems(self) -> list[str]:
        out = [self.error] if self.error else []
        if not self.exists and not self.error:
            out.append(f"bucket {self.bucket} does not exist (create it with: yangyang-rec lifecycle --apply)")
        out += [f"{f.name}: {f.detail}" for f in self.features if not f.ok]
        return out

    def lines(self) -> list[str]:
        where = self.endpoint or "AWS"
        out = [f"bucket {self.bucket} at {where}: " + ("set up correctly" if self.ok else "NOT set up correctly")]
        out += [f"  changed: {a}" for a in self.actions]
        if self.error:
            out.append(f"  ERROR  {self.error}")
        elif not self.exists:
            out.append(f"  MISSING {self.problems[0]}")
        for f in self.features:
            mark = "ok     " if f.ok else ("MISSING" if not f.supported else "WRONG  ")
            out.append(f"  {mark} {f.name:<20} {f.detail}")
        if self.missing_features:
            out.append(
                "  the store does not implement: " + ", ".join(self.missing_features)
                + "; `yangyang-rec purge` (run daily) destroys every recording when due regardless"
            )
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "bucket": self.bucket,
            "endpoint": self.endpoint,
            "exists": self.exists,
            "ok": self.ok,
            "error": self.error,
            "actions": self.actions,
            "missing_features": self.missing_features,
            "features": [f.__dict__ for f in self.features],
        }


def _get(call, **kwargs):
    """Run a GET of a bucket sub-resource: (response or None when not configured, unsupported exc or None)."""
    try:
        return call(**kwargs), None
    except ClientError as exc:
        if error_code(exc) in NOT_FOUND_CODES:
            return None, None
        if is_unsupported(exc):
            return None, exc
        raise


def _unsupported(name: str, exc: BaseException) -> Feature:
    return Feature(name, False, f"this store does not implement {name} ({error_code(exc)})", supported=False)


def _covers_recordings(rule: dict) -> bool:
    flt = rule.get("Filter") or {}
    prefix = flt.get("Prefix", rule.get("Prefix"))
    if prefix is None:
        prefix = (flt.get("And") or {}).get("Prefix", "")
    return PREFIX.startswith(prefix) or prefix.startswith(PREFIX)


def _check_lifecycle(rules: list[dict]) -> Feature:
    ours = [r for r in rules if r.get("ID") == RULE_ID]
    early = [
        r.get("ID", "?")
        for r in rules
        if r.get("Status") == "Enabled"
        and _covers_recordings(r)
        and (
            "Date" in (r.get("Expiration") or {})
            or (r.get("Expiration") or {}).get("Days", LIFECYCLE_DAYS) < LIFECYCLE_DAYS
        )
    ]
    if early:
        return Feature(
            "lifecycle", False,
            f"rule(s) {', '.join(early)} would delete recordings before their year is over; remove them",
        )
    if not ours:
        return Feature("lifecycle", False, f"no rule {RULE_ID} expiring {PREFIX} after {LIFECYCLE_DAYS} days")
    rule = ours[0]
    wrong = [k for k, v in LIFECYCLE_RULE.items() if k != "ID" and rule.get(k) != v]
    if wrong:
        return Feature("lifecycle", False, f"rule {RULE_ID} differs in {', '.join(wrong)}")
    return Feature("lifecycle", True, f"{PREFIX} expires {LIFECYCLE_DAYS} days after upload (never before due)")


def inspect_bucket(client, settings: Settings) -> BucketReport:
    """What the bucket has now, feature by feature. Never changes anything."""
    bucket = settings.s3_bucket
    report = BucketReport(bucket, settings.s3_endpoint_url)
    try:
        client.head_bucket(Bucket=bucket)
        report.exists = True
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
            return report
        report.error = f"cannot read bucket {bucket}: {error_code(exc)} (check the credentials and bucket policy)"
        return report
    except BotoCoreError as exc:
        report.error = f"cannot reach the store at {settings.s3_endpoint_url or 'AWS'}: {exc}"
        return report

    try:
        report.features = list(_inspect_features(client, settings))
    except ClientError as exc:
        report.error = f"cannot read the setup of bucket {bucket}: {error_code(exc)}"
    except BotoCoreError as exc:
        report.error = f"lost the store at {settings.s3_endpoint_url or 'AWS'}: {exc}"
    return report


def _inspect_features(client, settings: Settings):
    bucket = settings.s3_bucket
    resp, unsupported = _get(client.get_bucket_versioning, Bucket=bucket)
    if unsupported:
        yield _unsupported("versioning", unsupported)
    else:
        status = (resp or {}).get("Status", "off")
        yield Feature("versioning", status == "Enabled", f"versioning {status}")

    resp, unsupported = _get(client.get_bucket_lifecycle_configuration, Bucket=bucket)
    if unsupported:
        yield _unsupported("lifecycle", unsupported)
    else:
        yield _check_lifecycle((resp or {}).get("Rules", []))

    resp, unsupported = _get(client.get_public_access_block, Bucket=bucket)
    if unsupported:
        yield _unsupported("public access block", unsupported)
    else:
        conf = (resp or {}).get("PublicAccessBlockConfiguration", {})
        off = [k for k, v in PUBLIC_ACCESS_BLOCK.items() if conf.get(k) is not v]
        yield Feature(
            "public access block", not off, "all public access blocked" if not off else f"not set: {', '.join(off)}"
        )

    resp, unsupported = _get(client.get_bucket_encryption, Bucket=bucket)
    if unsupported:
        yield _unsupported("default encryption", unsupported)
    else:
        rules = (resp or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        algos = [r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules]
        good = any(a in (SSE, "aws:kms", "aws:kms:dsse") for a in algos)
        yield Feature("default encryption", good, f"default {algos[0]}" if good else "no default encryption")

    resp, unsupported = _get(client.get_object_lock_configuration, Bucket=bucket)
    enabled = (resp or {}).get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
    if settings.s3_object_lock:
        if unsupported:
            yield _unsupported("object lock", unsupported)
        else:
            yield Feature(
                "object lock", enabled,
                "enabled; each recording locked (COMPLIANCE) until its destruction is due" if enabled
                else "not enabled on this bucket",
            )
    elif enabled:
        yield Feature("object lock", True, "enabled on the bucket, but s3_object_lock is off: recordings not locked")


def apply_bucket_setup(client, settings: Settings) -> BucketReport:
    """Bring the bucket to the wanted setup; changes only what differs, so running it twice is a no-op."""
    bucket = settings.s3_bucket
    before = inspect_bucket(client, settings)
    if before.error:
        return before
    actions: list[str] = []
    messages: dict[str, str] = {}

    def attempt(name: str, call, **kwargs) -> None:
        try:
            call(**kwargs)
            actions.append(name)
            log.info("bucket.setup", bucket=bucket, feature=name)
        except ClientError as exc:
            if is_unsupported(exc):
                messages[name] = f"this store does not implement {name} ({error_code(exc)})"
            else:
                messages[name] = f"refused {name}: {error_code(exc)}: {exc.response.get('Error', {}).get('Message', '')}"
            log.warning("bucket.feature_refused", bucket=bucket, feature=name, code=error_code(exc))

    if not before.exists:
        kwargs: dict[str, object] = {"Bucket": bucket, "ObjectLockEnabledForBucket": settings.s3_object_lock}
        if settings.s3_region and settings.s3_region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.s3_region}
        attempt("create bucket" + (" with object lock" if settings.s3_object_lock else ""), client.create_bucket, **kwargs)
        if any(name.startswith("create bucket") for name in messages):
            before.error = next(iter(messages.values()))
            return before
        before = inspect_bucket(client, settings)
    state = {f.name: f for f in before.features}

    def wanted(name: str) -> bool:
        f = state.get(name)
        return f is None or (not f.ok and f.supported)

    if wanted("versioning"):
        attempt("versioning", client.put_bucket_versioning, Bucket=bucket,
                VersioningConfiguration={"Status": "Enabled"})
    if settings.s3_object_lock and wanted("object lock"):
        # No default retention on the bucket: it would count from the upload and lock late
        # uploads past their due date. Each object gets its own retain-until date instead.
        attempt("object lock", client.put_object_lock_configuration, Bucket=bucket,
                ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
        if "object lock" in messages and "does not implement" not in messages["object lock"]:
            messages["object lock"] = (
                f"bucket {bucket} was created without object lock and this store cannot add it to an existing "
                f"bucket ({messages['object lock'].split(': ', 1)[-1]}). Create a new bucket: set s3_bucket to "
                "a new name and run `yangyang-rec lifecycle --apply`, which creates it with object lock."
            )
    if wanted("lifecycle"):
        resp, _ = _get(client.get_bucket_lifecycle_configuration, Bucket=bucket)
        others = [r for r in (resp or {}).get("Rules", []) if r.get("ID") != RULE_ID]
        attempt("lifecycle", client.put_bucket_lifecycle_configuration, Bucket=bucket,
                LifecycleConfiguration={"Rules": [*others, LIFECYCLE_RULE]})
    if wanted("public access block"):
        attempt("public access block", client.put_public_access_block, Bucket=bucket,
                PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
    if wanted("default encryption"):
        attempt("default encryption", client.put_bucket_encryption, Bucket=bucket,
                ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": SSE}}]})

    after = inspect_bucket(client, settings)
    after.actions = actions
    for f in after.features:
        if f.name in messages and not f.ok:
            f.detail = messages[f.name]
            f.supported = f.supported and "does not implement" not in messages[f.name]
    return after
