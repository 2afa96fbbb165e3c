"""run_measured reports the child's own peak memory, not its parent's."""

import sys

from yangyang_rec.local_processes import run_measured

HOLD_MB = "import time; block = bytearray({mb} * 1024 * 1024); block[::4096] = b'x' * len(block[::4096]); time.sleep(0.3)"


def test_peak_memory_is_the_childs_own_even_when_the_parent_is_big(tmp_path):
    parent = bytearray(250 * 1024 * 1024)
    parent[::4096] = b"x" * len(parent[::4096])  # resident in this process
    small = run_measured([sys.executable, "-c", HOLD_MB.format(mb=20)], {}, 30, tmp_path / "small")
    big = run_measured([sys.executable, "-c", HOLD_MB.format(mb=150)], {}, 30, tmp_path / "big")
    del parent
    assert small.returncode == 0 and big.returncode == 0
    assert 20 <= small.peak_rss_mb < 100
    assert 150 <= big.peak_rss_mb < 250
