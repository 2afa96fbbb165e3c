"""Index rows with spool files behind them, as the recorder leaves them, for storage tests."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import uuid as uuidlib

from yangyang_rec.index import Call, utcnow
from yangyang_rec.retention import kst_date


def make_call(settings, *, answered_at: dt.datetime | None = None, size: int = 4096, **fields) -> Call:
    """A finished recording: a file of `size` random bytes in the spool and its row, upload pending."""
    call_uuid = fields.pop("call_uuid", None) or str(uuidlib.uuid4())
    answered_at = answered_at or utcnow() - dt.timedelta(minutes=5)
    path = settings.spool_dir / f"{call_uuid}.wav"
    data = os.urandom(size)
    path.write_bytes(data)
    values = dict(
        call_uuid=call_uuid,
        leg_uuid=call_uuid,
        node="fs1",
        line="2101",
        department="welfare",
        mode="full",
        direction="inbound",
        caller_number="01055512345",
        caller_name="Hong Gildong",
        callee_number="0336702101",
        answered_at=answered_at,
        recorded_on=kst_date(answered_at),
        ended_at=answered_at + dt.timedelta(seconds=60),
        duration_s=60.0,
        recording_path=str(path),
        bytes=size,
        sha256=hashlib.sha256(data).hexdigest(),
        record_state="completed",
        upload_state="pending",
    )
    values.update(fields)
    return Call.create(**values)


def versions_of(client, bucket: str, key: str) -> list[dict]:
    resp = client.list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in resp.get("Versions", []) if v["Key"] == key]
