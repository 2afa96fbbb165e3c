"""Keeps the daemon's shipper busy for the latency figure, from its own process so that its SQLite
writes and bucket clean-ups never delay the stand-in in the bench process.

Keeps 8 rows of SOURCE (hard links in the spool) waiting in the daemon's upload queue and empties
the bucket every 10 s so moto's memory stays flat. Settings from YYREC_* variables; stops on SIGTERM.

    python -m yangyang_rec.bench.upload_feeder SOURCE SIZE SHA256
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid as uuidlib
from pathlib import Path

FEED_NODE = "bench-feed"


def main(argv: list[str]) -> int:
    from yangyang_rec.bench.uploads import empty_bucket, plain_client
    from yangyang_rec.index import Call, open_index, utcnow
    from yangyang_rec.retention import kst_date
    from yangyang_rec.settings import load_settings

    source, size, sha256 = Path(argv[0]), int(argv[1]), argv[2]
    settings = load_settings().settings
    open_index(settings.database_url)
    client = plain_client(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    last_empty = time.monotonic()
    while not stop.is_set():
        waiting = Call.select().where((Call.node == FEED_NODE) & Call.upload_state.in_(("pending", "uploading"))).count()
        rows = []
        now = utcnow()
        for _ in range(max(0, 8 - waiting)):
            call_uuid = str(uuidlib.uuid4())
            path = settings.spool_dir / f"feed-{call_uuid}.wav"
            os.link(source, path)
            rows.append(dict(
                call_uuid=call_uuid, leg_uuid=call_uuid, node=FEED_NODE, line="2101", department="welfare",
                mode="full", direction="inbound", answered_at=now, recorded_on=kst_date(now), ended_at=now,
                duration_s=960.0, recording_path=str(path), bytes=size, sha256=sha256,
                record_state="completed", upload_state="pending",
            ))
        if rows:
            Call.insert_many(rows).execute()
        if time.monotonic() - last_empty > 10:
            empty_bucket(client, settings.s3_bucket)
            last_empty = time.monotonic()
        stop.wait(0.5)
    uploaded = Call.select().where((Call.node == FEED_NODE) & (Call.upload_state == "uploaded")).count()
    print(uploaded, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
