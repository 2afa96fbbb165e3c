"""Figure 4: upload throughput through the Shipper vs. plain boto3 `upload_file`, same files, same server.

Both sides upload `upload_concurrency` files at a time to the same moto server and bucket. The
shipper does more per file than the baseline (hash, HEAD before and after, SHA-256 checksum,
index writes, freeing the spool): the ratio is what that care costs. Rounds alternate the two
sides so a noisy neighbour hits both; each side's best round counts.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

from yangyang_rec.bench.figures import Figure
from yangyang_rec.index import Call, utcnow
from yangyang_rec.retention import kst_date
from yangyang_rec.settings import Settings
from yangyang_rec.shipper import MB, Shipper

PLAIN_PREFIX = "plain/"


@dataclass(frozen=True)
class UploadCase:
    label: str
    size: int
    files: int


@dataclass
class Source:
    path: Path
    size: int
    sha256: str


def write_sources(workdir: Path, case: UploadCase) -> list[Source]:
    """Files of random bytes (incompressible, like audio), written once per case; not timed."""
    folder = workdir / f"src-{case.label}"
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for i in range(case.files):
        path = folder / f"{i}.wav"
        digest = hashlib.sha256()
        with open(path, "wb") as f:
            left = case.size
            while left:
                chunk = os.urandom(min(left, 4 * MB))
                digest.update(chunk)
                f.write(chunk)
                left -= len(chunk)
        sources.append(Source(path, case.size, digest.hexdigest()))
    return sources


def plain_client(settings: Settings):
    """boto3 as anyone would use it: defaults, except path addressing, which a loopback server needs."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=max(10, settings.upload_concurrency * 4)),
    )


def plain_round(client, settings: Settings, sources: list[Source]) -> float:
    """Seconds for `upload_file` of every source, upload_concurrency files at a time."""
    started = time.perf_counter()
    with ThreadPoolExecutor(settings.upload_concurrency) as pool:
        jobs = [
            pool.submit(client.upload_file, str(s.path), settings.s3_bucket, f"{PLAIN_PREFIX}{uuidlib.uuid4()}.wav")
            for s in sources
        ]
        for job in jobs:
            job.result()
    return time.perf_counter() - started


def queue_rows(settings: Settings, sources: list[Source]) -> None:
    """Each source hard-linked into the spool with a finished row, as the recorder leaves it."""
    answered = utcnow()
    rows = []
    for source in sources:
        call_uuid = str(uuidlib.uuid4())
        path = settings.spool_dir / f"{call_uuid}.wav"
        os.link(source.path, path)
        rows.append(dict(
            call_uuid=call_uuid, leg_uuid=call_uuid, node="bench", line="2101", department="welfare",
            mode="full", direction="inbound", answered_at=answered, recorded_on=kst_date(answered),
            ended_at=answered, duration_s=60.0, recording_path=str(path), bytes=source.size,
            sha256=source.sha256, record_state="completed", upload_state="pending",
        ))
    Call.insert_many(rows).execute()


def shipper_round(shipper: Shipper, settings: Settings, sources: list[Source]) -> float:
    queue_rows(settings, sources)
    started = time.perf_counter()
    result = shipper.drain_once()
    seconds = time.perf_counter() - started
    if result.uploaded != len(sources):
        raise RuntimeError(f"shipper uploaded {result.uploaded} of {len(sources)}: {result.errors[:3]}")
    return seconds


def empty_bucket(client, bucket: str) -> None:
    """Delete every version, so moto's memory does not grow round after round."""
    paginator = client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket):
        doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", [])]
        doomed += [{"Key": m["Key"], "VersionId": m["VersionId"]} for m in page.get("DeleteMarkers", [])]
        for i in range(0, len(doomed), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": doomed[i:i + 1000], "Quiet": True})


def measure(settings: Settings, workdir: Path, cases: list[UploadCase], rounds: int, say) -> list[Figure]:
    """Run every case; the index must already be open and the bucket set up."""
    shipper = Shipper(settings)
    plain = plain_client(settings)
    figures = []
    for case in cases:
        sources = write_sources(workdir, case)
        total_mb = case.size * case.files / MB
        best = {"plain": float("inf"), "shipper": float("inf")}
        for r in range(rounds):
            order = ("plain", "shipper") if r % 2 == 0 else ("shipper", "plain")
            for side in order:
                if side == "plain":
                    seconds = plain_round(plain, settings, sources)
                else:
                    seconds = shipper_round(shipper, settings, sources)
                best[side] = min(best[side], seconds)
                empty_bucket(plain, settings.s3_bucket)
        shipper_mbs, plain_mbs = total_mb / best["shipper"], total_mb / best["plain"]
        say(f"uploads {case.label}: shipper {shipper_mbs:.1f} MB/s, plain boto3 {plain_mbs:.1f} MB/s")
        for source in sources:
            source.path.unlink()
        how = f"{case.files} files x {case.label}, {settings.upload_concurrency} at a time, best of {rounds}"
        figures += [
            Figure(f"upload {case.label}: shipper / plain boto3", shipper_mbs / plain_mbs, "ratio", ">= 0.9", how),
            Figure(f"upload {case.label}: shipper", shipper_mbs, "MB/s"),
            Figure(f"upload {case.label}: plain boto3 upload_file", plain_mbs, "MB/s"),
        ]
    return figures
