"""SIGTERM mid-call: the daemon (a real subprocess) exits within 5 s leaving the recording running;
the next start adopts the call and finalizes it once, with no second recording."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time

import gevent
import gevent.subprocess

from tests.recorder_fixtures import TEST_LINES, sha256


def start_daemon(tmp_path, port):
    env = dict(os.environ)
    env.update(
        YYREC_ESL_PORT=str(port),
        YYREC_SPOOL_DIR=str(tmp_path / "spool"),
        YYREC_DATABASE_URL=f"sqlite:///{tmp_path}/index.sqlite3",
        YYREC_LINES_FILE=str(tmp_path / "lines.yaml"),
        YYREC_S3_ENDPOINT_URL="http://127.0.0.1:9",  # nothing there: uploads wait, recording goes on
        YYREC_S3_ACCESS_KEY_ID="test",
        YYREC_S3_SECRET_ACCESS_KEY="test",
        YYREC_LOG_FORMAT="json",
    )
    return gevent.subprocess.Popen(
        [sys.executable, "-m", "yangyang_rec", "run"],
        cwd=tmp_path,
        env=env,
        stdout=gevent.subprocess.PIPE,
        stderr=gevent.subprocess.STDOUT,
    )


def rows(tmp_path):
    path = tmp_path / "index.sqlite3"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        try:
            return db.execute("select call_uuid, record_state, sha256, recording_path from call").fetchall()
        except sqlite3.OperationalError:
            return []


def wait_for(predicate, timeout):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline
        gevent.sleep(0.05)


def test_sigterm_mid_call_then_restart_finalizes_the_call_once(standin, tmp_path):
    (tmp_path / "lines.yaml").write_text(TEST_LINES, encoding="utf-8")
    daemon = start_daemon(tmp_path, standin.port)
    try:
        wait_for(lambda: any(c.startswith("show channels") for _t, c in standin.api_log), 15)
        call = standin.place_call(kind="inbound", line="2101", talk_s=240)  # 12 s at the stand-in's scale
        wait_for(lambda: rows(tmp_path) and call.recordings, 10)
        stopped_at = time.time()
        daemon.send_signal(signal.SIGTERM)
        wait_for(lambda: daemon.poll() is not None, 5)
        assert time.time() - stopped_at < 5 and daemon.returncode == 0
        assert not call.done.is_set()
        assert [r[1] for r in rows(tmp_path)] == ["recording"]
        daemon = start_daemon(tmp_path, standin.port)
        assert call.done.wait(20)
        wait_for(lambda: rows(tmp_path)[0][1] != "recording", 10)
        ((uuid, state, digest, path),) = rows(tmp_path)
        assert (uuid, state) == (call.a_uuid, "completed") and digest == sha256(path)
        assert len([c for _t, c in standin.api_log if c.startswith("uuid_record")]) == 1
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=6)
