"""Figure 5: the retention audit over one year of the county (~2.2 million calls) in its own process.

The index is written straight through sqlite3 in big transactions (not timed). The bucket holds
the most recent `objects` recordings: as many as the local moto server takes in the time the
bench allows. Every other row says 'uploaded' too, so the audit must report each of them as
missing: it streams the whole index against the whole listing, and the expected counts check
that it really looked at every row. Peak memory comes from wait4 for the audit process alone.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from yangyang_rec.bench.figures import Figure
from yangyang_rec.bucket import PREFIX, make_client
from yangyang_rec.index import Call, utcnow
from yangyang_rec.local_processes import run_measured
from yangyang_rec.retention import KST_OFFSET
from yangyang_rec.settings import Settings

COUNTY_CALLS_PER_YEAR = 2_200_000
DEPARTMENTS = ("welfare", "civil", "permits", "property", "tax", "admin", "tourism", "culture",
               "environment", "construction", "agriculture", "health", "fisheries", "safety", "finance", "planning")
OBJECT_BYTES = 64


ROWS_SQL = """
WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < :calls),
days AS (SELECT n, date(:today, printf('-%d days', 364 - n / :per_day)) AS day,
                printf('%08x-%04x-4%03x-a%03x-%012x', n, (n * 7919) % 65536, (n * 104729) % 4096,
                       (n * 1299709) % 4096, (n * 15485863) % 281474976710656) AS uuid,
                (SELECT name FROM bench_departments WHERE i = n % 16) AS department
         FROM seq),
calls AS (SELECT *, min(datetime(day, printf('+%d seconds', (n % :per_day) * 28800 / :per_day)), :now) AS answered
          FROM days)
INSERT INTO {table} ({columns})
SELECT {values} FROM calls
"""


def build_index(db_path: Path, calls: int, now: dt.datetime) -> int:
    """Fill the (already created) index with one year of calls in one SQL statement; returns rows written.

    Days are KST calendar days ending today; answered_at runs through office hours (09:00-17:00
    KST is 00:00-08:00 UTC on the same date). Every row is a finished, uploaded recording.
    """
    per_day = max(1, calls // 365)
    calls = per_day * 365 if calls >= 365 else calls
    computed = {
        "call_uuid": "uuid", "leg_uuid": "uuid", "department": "department", "recorded_on": "day",
        "answered_at": "answered", "ended_at": "datetime(answered, '+95 seconds')",
        "uploaded_at": "datetime(answered, '+95 seconds')",
        "retain_until": "date(day, '+1 year')",  # the audit reads it only for display
        "recording_path": "'/var/spool/yangyang-rec/' || strftime('%Y/%m/%d/', day) || uuid || '.wav'",
        "key": f"'{PREFIX}' || department || strftime('/%Y/%m/%d/', day) || uuid || '.wav'",
    }
    constant = dict(
        node="fs1", line="2101", mode="full", direction="inbound", caller_number="01055512345",
        caller_name="홍길동", callee_number="0336702101", duration_s=95.0, hangup_cause="NORMAL_CLEARING",
        notice_played=1, bytes=OBJECT_BYTES, sha256="0" * 64, record_state="completed", upload_state="uploaded",
        bucket="bench", version_id="v1", etag="e" * 32,
    )
    fields = [f for f in Call._meta.sorted_fields if f.name != "id"]
    params: dict[str, object] = {"calls": calls, "per_day": per_day, "today": str((now + KST_OFFSET).date()),
                                 "now": now.strftime("%Y-%m-%d %H:%M:%S")}
    values = []
    for f in fields:
        if f.name in computed:
            values.append(computed[f.name])
            continue
        value = constant[f.name] if f.name in constant else (f.default() if callable(f.default) else f.default)
        params[f"c_{f.name}"] = f.db_value(value) if value is not None else None
        values.append(f":c_{f.name}")
    sql = ROWS_SQL.format(table=Call._meta.table_name, columns=", ".join(f.column_name for f in fields),
                          values=", ".join(values))
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    # Indexes are dropped for the bulk insert and built again after: a third faster than keeping them.
    indexes = con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                          "AND sql IS NOT NULL", (Call._meta.table_name,)).fetchall()
    with con:
        for name, _ in indexes:
            con.execute(f'DROP INDEX "{name}"')
        con.execute("CREATE TEMP TABLE bench_departments (i INTEGER PRIMARY KEY, name TEXT)")
        con.executemany("INSERT INTO bench_departments VALUES (?, ?)", enumerate(DEPARTMENTS))
        con.execute(sql, params)
        for _, create in indexes:
            con.execute(create)
    con.close()
    return calls


def newest_keys(count: int) -> list[tuple[str, int]]:
    query = Call.select(Call.key, Call.bytes).order_by(Call.id.desc()).limit(count).tuples()
    return list(query)


def fill_bucket(settings: Settings, keys: list[tuple[str, int]], budget_s: float, threads: int = 8) -> tuple[int, float]:
    """PUT small objects for `keys` in order until done or `budget_s` is spent; (objects stored, PUT/s)."""
    client = make_client(settings)
    body = os.urandom(OBJECT_BYTES)
    started = time.perf_counter()
    deadline = started + budget_s
    stored = 0
    with ThreadPoolExecutor(threads) as pool:
        for i in range(0, len(keys), 500):
            if time.perf_counter() > deadline:
                break
            chunk = keys[i:i + 500]
            list(pool.map(lambda k: client.put_object(Bucket=settings.s3_bucket, Key=k[0], Body=body), chunk))
            stored += len(chunk)
    return stored, stored / max(1e-9, time.perf_counter() - started)


def audit_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YYREC_", "AWS_"))}
    env.update(
        YYREC_SPOOL_DIR=str(settings.spool_dir), YYREC_DATABASE_URL=settings.database_url,
        YYREC_S3_ENDPOINT_URL=settings.s3_endpoint_url, YYREC_S3_BUCKET=settings.s3_bucket,
        YYREC_S3_REGION=settings.s3_region, YYREC_S3_ADDRESSING_STYLE=settings.s3_addressing_style,
        YYREC_S3_ACCESS_KEY_ID=settings.s3_access_key_id, YYREC_S3_SECRET_ACCESS_KEY=settings.s3_secret_access_key,
        YYREC_LOG_LEVEL="warning", YYREC_SETTINGS_FILE=os.devnull,
    )
    return env


def measure(settings: Settings, workdir: Path, calls: int, objects: int, fill_budget_s: float, say) -> list[Figure]:
    """The index must be open (schema created) and the bucket set up; both are filled here."""
    db_path = Path(settings.database_url.removeprefix("sqlite:///"))
    started = time.perf_counter()
    calls = build_index(db_path, calls, utcnow())
    say(f"audit: {calls:,} index rows written in {time.perf_counter() - started:.0f} s (not timed)")
    stored, rate = fill_bucket(settings, newest_keys(objects), fill_budget_s) if objects else (0, 0.0)
    say(f"audit: {stored:,} objects put at {rate:.0f}/s (not timed)")
    out = workdir / "audit.json"
    done = run_measured([sys.executable, "-m", "yangyang_rec", "audit", "--json", str(out)],
                        audit_env(settings), timeout=300, log_dir=workdir / "audit-process")
    report = json.loads(out.read_text()) if out.exists() else {}
    counts, checked = report.get("counts", {}), report.get("checked", {})
    expected_missing = calls - stored
    looked = (checked.get("rows"), checked.get("objects"), counts.get("missing")) == (calls, stored, expected_missing)
    note = (f"{calls:,} rows, a bucket of {stored:,} objects (as many as moto took in {fill_budget_s:.0f} s at "
            f"{rate:.0f} PUT/s); every other row is reported missing, as it must be: audit found "
            f"rows {checked.get('rows')}, objects {checked.get('objects')}, missing {counts.get('missing')}")
    if not looked:
        note += f" (expected missing {expected_missing:,}) — the audit did NOT account for every row: see {workdir / 'audit-process'}"
    say(f"audit: {done.seconds:.1f} s, peak {done.peak_rss_mb:.0f} MB")
    return [
        Figure("retention audit: time", done.seconds if looked else None, "s", "<= 60", note),
        Figure("retention audit: peak memory", done.peak_rss_mb if looked else None, "MB", "<= 300"),
    ]
