"""Warns loudly before the spool disk fills: on a full disk FreeSWITCH cannot write recordings.

Runs beside the recorder (a service greenlet). One error when the threshold is crossed, again
every `repeat` seconds while it stays above, and one info line when it is back below.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import gevent.event
import structlog

from yangyang_rec.settings import Settings

log = structlog.get_logger(__name__)

MB = 1024 * 1024


class SpoolWatch:
    def __init__(self, settings: Settings, every: float = 30.0, repeat: float = 600.0):
        self.spool = Path(settings.spool_dir)
        self.threshold = settings.spool_warn_percent
        self.every = every
        self.repeat = repeat
        self.alarmed_at: float | None = None

    def check(self) -> float:
        """The spool disk's used percentage now; logs as described in the module doc."""
        self.spool.mkdir(parents=True, exist_ok=True)
        usage = shutil.disk_usage(self.spool)
        used = round(100 * usage.used / usage.total, 1)
        now = time.monotonic()
        if used >= self.threshold:
            if self.alarmed_at is None or now - self.alarmed_at >= self.repeat:
                self.alarmed_at = now
                log.error(
                    "spool.nearly_full",
                    spool=str(self.spool),
                    used_percent=used,
                    threshold_percent=self.threshold,
                    free_mb=usage.free // MB,
                    advice="free disk space or fix uploads (yangyang-rec calls; make audit) before recordings fail",
                )
        elif self.alarmed_at is not None:
            self.alarmed_at = None
            log.info("spool.ok", spool=str(self.spool), used_percent=used, threshold_percent=self.threshold)
        return used

    def run_forever(self, stop_event: gevent.event.Event) -> None:
        while not stop_event.is_set():
            try:
                self.check()
            except OSError as exc:
                log.error("spool.unreadable", spool=str(self.spool), problem=str(exc))
            stop_event.wait(self.every)
