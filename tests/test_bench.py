"""`make bench` machinery on toy sizes: every group runs end to end against real processes (moto, the
stand-in, the daemon, the audit) and bench.json has its shape. Timings are not checked here."""

import json

from yangyang_rec.bench.figures import Figure, percentile, table
from yangyang_rec.bench.run import GROUPS, run


def test_targets_and_percentiles():
    assert Figure("a", 0.85, "ratio", ">= 0.8").passed is True
    assert Figure("a", 12.0, "ms", "<= 10").passed is False
    assert Figure("a", 2000, "calls", ">= 2,000").passed is True
    assert Figure("a", None, "s", "<= 60").passed is False
    assert Figure("a", 3.0, "MB/s").passed is None
    assert percentile([5, 1, 4, 2, 3], 50) == 3 and percentile(list(range(1, 101)), 99) == 99
    assert "short" in table([Figure("slow", 12.0, "ms", "<= 10")])


def test_tiny_bench_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    doc = run("tiny", GROUPS, out, workroot=tmp_path)
    assert json.loads(out.read_text()) == doc
    assert set(doc["machine"]) >= {"cpu_count", "python", "platform", "date"}
    names = [f["name"] for f in doc["figures"]]
    for expected in ("stand-in: events/s it writes", "events: daemon / bare greenswitch",
                     "answer->record office: p99", "scale: concurrent recorded calls (p99 < 50 ms)",
                     "scale: daemon memory there", "retention audit: time", "retention audit: peak memory"):
        assert expected in names
    assert any(n.startswith("upload ") and n.endswith("shipper / plain boto3") for n in names)
    for figure in doc["figures"]:
        assert set(figure) >= {"name", "value", "unit", "target", "pass"}
        assert figure["pass"] in (True, False, None)
        assert (figure["pass"] is None) == (figure["target"] is None)
    measured = {f["name"]: f["value"] for f in doc["figures"]}
    assert measured["retention audit: time"] is not None  # the audit accounted for every row
    assert isinstance(measured["scale: concurrent recorded calls (p99 < 50 ms)"], int)  # a step count, not a timing
