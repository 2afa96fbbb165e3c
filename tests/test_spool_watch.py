"""The spool-disk warning on the real file system of the test's temporary folder."""

import io
import json

from yangyang_rec.logs import configure_logging
from yangyang_rec.settings import Settings
from yangyang_rec.spool_watch import SpoolWatch


def logged(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_warns_once_above_the_threshold_then_says_when_it_is_back(tmp_path):
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    settings = Settings(spool_dir=tmp_path / "spool", spool_warn_percent=1)  # any real disk is over 1 % used
    watch = SpoolWatch(settings, repeat=3600)
    used = watch.check()
    watch.check()
    assert used >= 1
    events = [e["event"] for e in logged(out)]
    assert events == ["spool.nearly_full"]
    (alarm,) = logged(out)
    assert alarm["level"] == "error" and alarm["threshold_percent"] == 1 and alarm["free_mb"] >= 0

    watch.threshold = 100  # the disk is below it now
    watch.check()
    assert [e["event"] for e in logged(out)] == ["spool.nearly_full", "spool.ok"]


def test_quiet_below_the_threshold(tmp_path):
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    SpoolWatch(Settings(spool_dir=tmp_path / "spool", spool_warn_percent=100)).check()
    assert logged(out) == []
