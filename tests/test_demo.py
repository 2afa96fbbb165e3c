"""`make demo` in small: the real daemon process, the stand-in, moto, and the audit, end to end."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_small_demo_records_indexes_ships_and_audits_clean(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "yangyang_rec", "demo", "--calls", "40", "--time-scale", "200",
         "--workdir", str(tmp_path / "demo")],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "demo passed" in out
    assert "clean: every recording is where the index says" in out
    assert "spool after shipping: 0 file(s) left" in out
