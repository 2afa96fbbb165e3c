"""Fixtures: a started FreeSWITCH stand-in on a free loopback port, and a raw event-socket client.

The raw client uses gevent sockets so the stand-in's greenlets run while a test waits on it.
"""

from __future__ import annotations

import time
from pathlib import Path

import gevent
import gevent.socket
import pytest

from yangyang_rec.esl.frames import Frame, FrameReader, encode_command
from yangyang_rec.standin import FreeSwitchStandIn

CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "esl-captures"


class RawClient:
    """Bytes in, frames out: no greenswitch, so tests see exactly what the stand-in sends."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.sock = gevent.socket.create_connection((host, port), timeout=5)
        self.reader = FrameReader()
        self.frames: list[Frame] = []
        self.pending: list[Frame] = []  # events that arrived while waiting for a reply
        self.raw = bytearray()
        self.eof = False

    def send(self, line: str, headers: dict[str, str] | None = None) -> None:
        self.sock.sendall(encode_command(line, headers))

    def _fill(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(262144)
        except (TimeoutError, OSError):
            return False
        if not data:
            self.eof = True
            return False
        self.raw += data
        self.frames += self.reader.feed(data)
        return True

    def next_frame(self, timeout: float = 5.0) -> Frame:
        deadline = time.time() + timeout
        while not self.frames:
            if self.eof or time.time() > deadline or not self._fill(max(0.01, deadline - time.time())):
                if self.eof or time.time() > deadline:
                    raise TimeoutError("no frame from the stand-in")
        return self.frames.pop(0)

    def command(self, line: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> Frame:
        """Send a command and return its reply, keeping events that arrive meanwhile in `events`."""
        self.send(line, headers)
        while True:
            frame = self.next_frame(timeout)
            if frame.content_type in ("command/reply", "api/response"):
                return frame
            self.pending.append(frame)

    def login(self, password: str = "ClueCon") -> None:
        assert self.next_frame().content_type == "auth/request"
        assert self.command(f"auth {password}").headers["Reply-Text"] == "+OK accepted"

    def read_until_eof(self, timeout: float = 5.0) -> bytes:
        deadline = time.time() + timeout
        while not self.eof and time.time() < deadline:
            self._fill(max(0.01, deadline - time.time()))
        return bytes(self.raw)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def standin():
    fs = FreeSwitchStandIn(host="127.0.0.1", port=0, time_scale=20.0).start()
    yield fs
    fs.stop()
    gevent.sleep(0)


@pytest.fixture
def raw_client(standin):
    client = RawClient(standin.port)
    client.login()
    yield client
    client.close()
