"""The daemon as `make bench` runs it: exactly `yangyang-rec run`, with the shipper greenlet beside the
recorder (as a deployment runs them) unless --no-ship. Settings come from YYREC_* variables only.

    python -m yangyang_rec.bench.daemon_process [--no-ship]
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from gevent import monkey

    monkey.patch_all()
    from yangyang_rec.recorder import run_daemon
    from yangyang_rec.settings import load_settings
    from yangyang_rec.shipper import Shipper

    settings = load_settings().settings
    services = [] if "--no-ship" in argv else [Shipper(settings).run_forever]
    return run_daemon(settings, services=services)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
