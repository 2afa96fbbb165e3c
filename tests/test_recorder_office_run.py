"""One office run over all 198 lines of config/lines.yaml: the index matches the placed calls exactly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.recorder_fixtures import RunningRecorder, sha256
from yangyang_rec.lines import load_plan
from yangyang_rec.standin import FreeSwitchStandIn

LINES = Path(__file__).resolve().parents[1] / "config" / "lines.yaml"


@pytest.fixture
def fast_standin():
    fs = FreeSwitchStandIn(host="127.0.0.1", port=0, time_scale=20.0).start()
    yield fs
    fs.stop()


def test_500_calls_over_198_lines_index_matches_the_placed_calls(fast_standin, tmp_path):
    plan = load_plan(LINES)
    assert len(plan.by_extension) == 198
    rec = RunningRecorder(fast_standin, tmp_path, lines_file=LINES)
    try:
        started = time.time()
        placed = fast_standin.run_traffic(plan, calls=520, rate=60, seed=4)
        rec.settle(timeout=60)
        elapsed = time.time() - started
    finally:
        rec.stop()
    expected = set()
    for call in placed:
        line = plan.line(call.line)
        if call.answered and call.kind != "internal" and line.records(call.kind):
            expected.add(call.a_uuid)
    rows = {r.call_uuid: r for r in rec.rows()}
    assert len(placed) >= 500 and len(expected) > 100
    assert set(rows) == expected, (len(set(rows) - expected), len(expected - set(rows)))
    by_uuid = {c.a_uuid: c for c in placed}
    for uuid, row in rows.items():
        assert row.record_state == "completed", (uuid, row.record_reason)
        assert row.sha256 == sha256(row.recording_path)
        assert by_uuid[uuid].recordings == [row.recording_path]
        assert row.line == by_uuid[uuid].line and row.upload_state == "pending"
    records = [cmd for _t, cmd in fast_standin.api_log if cmd.startswith("uuid_record")]
    assert len(records) == len(expected)
    assert elapsed < 45
