"""Runs every figure group in one process and one run, prints the table, writes var/bench.json.

    python -m yangyang_rec.bench [--size full|tiny] [--only GROUP ...] [--out var/bench.json]

`full` is `make bench` (under 10 minutes on a 2-core machine); `tiny` runs the same machinery on
toy sizes in seconds, for the smoke test. Groups: events, latency, scale, uploads, audit.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from yangyang_rec.bench import events, latency, retention_audit, scale, uploads
from yangyang_rec.bench.figures import Figure, document, table, write_json
from yangyang_rec.bucket import apply_bucket_setup, make_client
from yangyang_rec.index import database, open_index
from yangyang_rec.local_processes import MotoServer
from yangyang_rec.settings import Settings
from yangyang_rec.shipper import MB

GROUPS = ("events", "latency", "scale", "uploads", "audit")


@dataclass(frozen=True)
class Sizes:
    event_calls: int
    latency: latency.LatencyOptions
    scale: scale.ScaleOptions
    upload_cases: tuple[uploads.UploadCase, ...]
    upload_rounds: int
    audit_calls: int
    audit_objects: int
    audit_fill_s: float


SIZES = {
    "full": Sizes(
        event_calls=600,
        latency=latency.LatencyOptions(),
        scale=scale.ScaleOptions(),
        upload_cases=(uploads.UploadCase("1 MB", MB, 32), uploads.UploadCase("30 MB", 30 * MB, 6)),
        upload_rounds=3,
        audit_calls=retention_audit.COUNTY_CALLS_PER_YEAR,
        audit_objects=20_000,
        audit_fill_s=40.0,
    ),
    "tiny": Sizes(
        event_calls=20,
        latency=latency.LatencyOptions(busy=10, office_s=2, uploads_s=2, upload_mb=6, burst_rate=20, burst_s=1,
                                        settle_s=0.5),
        scale=scale.ScaleOptions(steps=(10, 20), probes=5, probe_rate=10),
        upload_cases=(uploads.UploadCase("64 kB", 64 * 1024, 4),),
        upload_rounds=1,
        audit_calls=2_000,
        audit_objects=50,
        audit_fill_s=10.0,
    ),
}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def bench_settings(endpoint: str, workdir: Path, bucket: str) -> Settings:
    """Settings for one figure group: its own spool, index and bucket on the shared moto server."""
    workdir.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        s3_endpoint_url=endpoint, s3_bucket=bucket, s3_region="ap-northeast-2", s3_addressing_style="path",
        s3_access_key_id="bench", s3_secret_access_key="bench-secret", spool_dir=workdir / "spool",
        database_url=f"sqlite:///{workdir / 'index.sqlite3'}",
        lines_file=Path("config/lines.yaml").resolve(),
        notice_file=Path("freeswitch/sounds/notice-ko.wav").resolve(), node="bench",
    )
    settings.spool_dir.mkdir(parents=True, exist_ok=True)
    return settings


def prepare(settings: Settings) -> Settings:
    """Index created, bucket set up as `yangyang-rec lifecycle --apply` does."""
    open_index(settings.database_url)
    report = apply_bucket_setup(make_client(settings), settings)
    if not report.ok:
        raise RuntimeError(f"bucket {settings.s3_bucket} could not be set up: {report.problems}")
    return settings


def run(size: str, only: tuple[str, ...], out: Path, workroot: Path | None = None) -> dict[str, object]:
    sizes = SIZES[size]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="yyrec-bench-", dir=workroot))
    figures: list[Figure] = []
    timings: dict[str, float] = {}
    try:
        with MotoServer(root / "moto.log") as moto:
            for group in GROUPS:
                if group not in only:
                    continue
                t0 = time.monotonic()
                say(f"-- {group}")
                workdir = root / group
                settings = prepare(bench_settings(moto.endpoint, workdir, f"bench-{group}"))
                if group == "events":
                    figures += events.measure(settings, workdir, sizes.event_calls, say)
                elif group == "latency":
                    figures += latency.measure(settings, workdir, sizes.latency, say)
                elif group == "scale":
                    figures += scale.measure(settings, workdir, sizes.scale, say)
                elif group == "uploads":
                    figures += uploads.measure(settings, workdir, list(sizes.upload_cases), sizes.upload_rounds, say)
                elif group == "audit":
                    figures += retention_audit.measure(settings, workdir, sizes.audit_calls, sizes.audit_objects,
                                                       sizes.audit_fill_s, say)
                database.obj.close()
                shutil.rmtree(workdir, ignore_errors=True)
                timings[group] = round(time.monotonic() - t0, 1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    doc = document(figures, {"size": size, "seconds": round(time.monotonic() - started, 1), "group_seconds": timings})
    write_json(out, doc)
    print(table(figures))
    print(f"\n{len(figures)} figures in {doc['seconds']:.0f} s ({size}); written to {out}")
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m yangyang_rec.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=list(GROUPS), metavar="GROUP")
    parser.add_argument("--out", type=Path, default=Path("var/bench.json"))
    args = parser.parse_args(argv)
    run(args.size, tuple(args.only), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
