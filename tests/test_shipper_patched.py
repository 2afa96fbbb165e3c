"""The shipper inside the daemon's process, where gevent has patched the standard library.

Regression: with s3transfer's own threads (`use_threads=True`) under `monkey.patch_all()`,
about one upload in a hundred hung forever in the thread pool, leaving its row 'uploading'.
"""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()
    import sys
    from pathlib import Path
    import gevent
    sys.path.insert(0, {tests!r})
    from yangyang_rec.index import Call, open_index
    from yangyang_rec.bucket import apply_bucket_setup, make_client
    from yangyang_rec.shipper import Shipper
    from s3_fixtures import settings_for
    from call_rows import make_call

    settings = settings_for({endpoint!r}, Path({tmp!r}), multipart_threshold_mb=5)
    open_index(settings.database_url)
    apply_bucket_setup(make_client(settings), settings)
    for _ in range({rows}):
        make_call(settings, size=300_000)
    with gevent.Timeout(90):
        Shipper(settings).drain_once()
    states = [c.upload_state for c in Call.select()]
    print(states.count("uploaded"), len(states))
    """
)


def test_every_upload_finishes_under_monkey_patching(s3_process_endpoint, tmp_path):
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    script = SCRIPT.format(tests=tests_dir, endpoint=s3_process_endpoint, tmp=str(tmp_path), rows=200)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-2000:]
    uploaded, total = map(int, done.stdout.splitlines()[-1].split())
    assert (uploaded, total) == (200, 200)
