"""Serve a transcript's events to clients: `simulate --replay FILE`, for support.

A transcript is a capture file (`NAME.txt`, the bytes a real FreeSWITCH sent, or one written by
`capture`). Each client that subscribes gets the transcript's events in order, untouched except
for frames it did not subscribe to; api commands are answered by the stand-in as usual.
"""

from __future__ import annotations

from pathlib import Path

from yangyang_rec.esl.frames import FrameReader
from yangyang_rec.standin.events import OutEvent
from yangyang_rec.standin.templates import plain_header_list


class RawEvent(OutEvent):
    """An event exactly as the transcript holds it (its own bytes), in the format it was captured in."""

    __slots__ = ("frame_bytes", "fmt")

    def __init__(self, headers, body, frame_bytes: bytes, fmt: str):
        super().__init__(dict(headers).get("Event-Name", ""), headers, body)
        self.frame_bytes = frame_bytes
        self.fmt = fmt

    def render(self, fmt: str) -> bytes:
        if fmt == self.fmt:
            return self.frame_bytes
        return super().render(fmt)


def transcript_events(path: Path) -> list[RawEvent]:
    out = []
    for frame in FrameReader().feed(Path(path).read_bytes()):
        ctype = frame.content_type
        raw = b"Content-Length: %d\nContent-Type: %s\n\n" % (len(frame.body), ctype.encode()) + frame.body
        if ctype == "text/event-plain":
            headers, body = plain_header_list(frame.body)
            out.append(RawEvent(headers, body, raw, "plain"))
        elif ctype == "text/event-json":
            import json

            data = json.loads(frame.body)
            body = str(data.pop("_body", ""))
            data.pop("Content-Length", None)
            out.append(RawEvent([(k, str(v)) for k, v in data.items()], body, raw, "json"))
    return out


def replay(fs, path: Path, wait_for_client_s: float = 30.0) -> int:
    """Wait for a subscribed client, then emit every event of the transcript; returns how many."""
    import time

    import gevent

    events = transcript_events(path)
    deadline = time.time() + wait_for_client_s
    while not any(c.fmt for c in fs.clients) and time.time() < deadline:
        gevent.sleep(0.05)
    for n, event in enumerate(events):
        fs.emit(event)
        if n % 64 == 0:
            gevent.sleep(0)
    return len(events)
