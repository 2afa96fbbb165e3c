"""Processes the demo and the bench start and watch: moto's S3 server, the daemon, the audit. Memory is read
from the kernel (/proc VmRSS and VmHWM while running), never estimated."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gevent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def rss_mb(pid: int) -> float:
    """Resident memory of a running process now (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory of a running program (VmHWM), in MB; None once it has exited.

    Not wait4's ru_maxrss: a child started by vfork + exec inherits its parent's high-water mark,
    so a 64 MB audit started from a 490 MB bench process reported 490 MB. VmHWM belongs to the
    program's own address space, which exec makes new.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a running process has used (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Finished:
    returncode: int
    seconds: float
    peak_rss_mb: float
    stdout: str
    stderr: str


def run_measured(argv: list[str], env: dict[str, str], timeout: float, log_dir: Path) -> Finished:
    """Run a command to its end; its peak RSS is its own VmHWM, read every 20 ms while it runs."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / "stdout.txt", log_dir / "stderr.txt"
    started = time.monotonic()
    peak = 0.0
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        deadline = started + timeout
        while True:
            # Read before reaping: a zombie has no address space left to read.
            peak = max(peak, peak_rss_mb(proc.pid) or 0.0)
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                _, status = os.waitpid(proc.pid, 0)
                break
            time.sleep(0.02)
    seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Finished(proc.returncode, seconds, peak,
                    out_path.read_text(errors="replace"), err_path.read_text(errors="replace"))


class MotoServer:
    """moto's standalone S3 server in its own process, so its CPU does not share our GIL."""

    def __init__(self, log_path: Path):
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MotoServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in __exit__
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, 30, self.proc)
        return self

    def __exit__(self, *exc) -> None:
        stop(self.proc)
        self._log.close()


def stop(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; only the process we started. Waits with gevent.sleep,
    so a stand-in in this process keeps answering the process while it shuts down."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while proc.poll() is None and time.monotonic() < deadline:
        gevent.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
