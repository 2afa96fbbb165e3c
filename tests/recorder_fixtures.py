"""Fixture: the recorder daemon in this process, against the FreeSWITCH stand-in, with its own index and spool."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import gevent
import pytest

from yangyang_rec.index import Call, open_index
from yangyang_rec.lines import load_plan
from yangyang_rec.recorder import Recorder
from yangyang_rec.settings import Settings

NOTICE = Path(__file__).resolve().parents[1] / "freeswitch" / "sounds" / "notice-ko.wav"
TEST_LINES = f"""
defaults:
  mode: full
  direction: both
  announcement: {NOTICE}
  notice_leg: citizen
departments:
  - id: welfare
    name: 주민복지실
    lines:
      - 2101
      - 2102
      - {{ext: "2103", mode: on_demand}}
      - {{ext: "2104", mode: off}}
      - {{ext: "2105", direction: inbound}}
"""


def sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class RunningRecorder:
    def __init__(self, fs, tmp_path: Path, lines_text: str = TEST_LINES, lines_file: Path | None = None,
                 on_ready_to_ship=None):
        self.fs = fs
        if lines_file is None:
            lines_file = tmp_path / "lines.yaml"
            lines_file.write_text(lines_text, encoding="utf-8")
        self.lines_file = lines_file
        self.settings = Settings(
            esl_port=fs.port,
            spool_dir=tmp_path / "spool",
            database_url=f"sqlite:///{tmp_path}/index.sqlite3",
            lines_file=lines_file,
            esl_command_timeout=3.0,
            node="fs-test",
        )
        open_index(self.settings.database_url)
        self.recorder = Recorder(self.settings, load_plan(lines_file), on_ready_to_ship=on_ready_to_ship)
        self.greenlet = gevent.spawn(self.recorder.run)
        assert self.recorder.esl.connected_event.wait(5), "recorder did not connect to the stand-in"

    def settle(self, timeout: float = 20) -> None:
        """Every placed call has ended and the recorder has finished its work for it."""
        assert self.fs.wait_idle(timeout), "stand-in calls did not finish"
        deadline = time.time() + timeout
        quiet_since = time.time()
        while time.time() - quiet_since < 0.3:  # events still on their way count as work
            assert time.time() < deadline, f"recorder still busy: {list(self.recorder.machine.open)}"
            if self.recorder._workers or self.recorder.machine.open:
                quiet_since = time.time()
            gevent.sleep(0.02)

    def rows(self) -> list[Call]:
        return list(Call.select())

    def api(self, prefix: str) -> list[str]:
        return [cmd for _t, cmd in self.fs.api_log if cmd.startswith(prefix)]

    def stop(self) -> None:
        self.recorder.stop()
        self.greenlet.join(timeout=6)


@pytest.fixture
def recorder(standin, tmp_path):
    running: list[RunningRecorder] = []

    def start(**kwargs) -> RunningRecorder:
        running.append(RunningRecorder(standin, tmp_path, **kwargs))
        return running[-1]

    yield start
    for r in running:
        r.stop()
