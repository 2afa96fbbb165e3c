"""Event-socket framing and event parsing, without I/O (feed bytes in, get frames out).

Every frame is a header block ("Name: value" lines, a blank line) and, when it has a
Content-Length, exactly that many body bytes. Plain events are a second header block
inside the body, each value URL-encoded by FreeSWITCH.

Values are URL-decoded one line at a time, after the block is split into lines: an
encoded newline (%0A) inside a caller's display name then stays inside that value and can
never forge another header. (greenswitch decodes the whole block first, so it cannot be
used to parse events.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import unquote

MAX_HEADER_BLOCK = 64 * 1024
MAX_BODY = 16 * 1024 * 1024


class FrameError(ValueError):
    """The byte stream is not valid event-socket framing; the connection cannot continue."""


class EventError(ValueError):
    """One event's body cannot be parsed; skip that event, keep the connection."""


@dataclass
class Frame:
    headers: dict[str, str]
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass
class Event:
    """One FreeSWITCH event: headers in arrival order (decoded) and its own body, if any."""

    headers: dict[str, str]
    body: str = ""
    raw_size: int = field(default=0, compare=False)

    @property
    def name(self) -> str:
        return self.headers.get("Event-Name", "")

    def get(self, key: str, default: str = "") -> str:
        return self.headers.get(key, default)


def _split_header_lines(block: str, decode: bool) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split("\n"):
        line = line.rstrip("\r")
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise EventError(f"header line without 'Name: value': {line[:80]!r}")
        value = value[1:] if value.startswith(" ") else value
        headers[name] = unquote(value, errors="replace") if decode else value
    return headers


def parse_plain_event(body: bytes) -> Event:
    """Parse a text/event-plain body. Values are URL-decoded per line (see module doc)."""
    text = body.decode("utf-8", errors="replace")
    block, sep, rest = text.partition("\n\n")
    headers = _split_header_lines(block, decode=True)
    if "Event-Name" not in headers:
        raise EventError("event without Event-Name")
    inner = ""
    if "Content-Length" in headers:
        try:
            length = int(headers["Content-Length"])
        except ValueError:
            raise EventError(f"bad Content-Length {headers['Content-Length']!r}") from None
        raw = rest.encode("utf-8", errors="replace")
        inner = raw[:length].decode("utf-8", errors="replace")
    return Event(headers, inner, len(body))


def parse_json_event(body: bytes) -> Event:
    """Parse a text/event-json body: values are raw UTF-8, the event's own body is `_body`."""
    try:
        data = json.loads(body.decode("utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        raise EventError(f"event-json is not JSON: {exc}") from None
    if not isinstance(data, dict) or "Event-Name" not in data:
        raise EventError("event-json without Event-Name")
    inner = str(data.pop("_body", ""))
    return Event({str(k): str(v) for k, v in data.items()}, inner, len(body))


def parse_event(frame: Frame) -> Event:
    if frame.content_type == "text/event-json":
        return parse_json_event(frame.body)
    if frame.content_type == "text/event-plain":
        return parse_plain_event(frame.body)
    raise EventError(f"not an event frame: {frame.content_type!r}")


class FrameReader:
    """Sans-I/O reader: `feed(bytes)` returns every complete frame received so far."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pending: dict[str, str] | None = None
        self._need = 0

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while True:
            if self._pending is None:
                end = self._buf.find(b"\n\n")
                if end < 0:
                    if len(self._buf) > MAX_HEADER_BLOCK:
                        raise FrameError("header block too long")
                    return frames
                block = bytes(self._buf[:end]).decode("utf-8", errors="replace")
                del self._buf[: end + 2]
                if not block.strip("\n"):
                    continue
                try:
                    headers = _split_header_lines(block, decode=False)
                except EventError as exc:
                    raise FrameError(str(exc)) from None
                length = headers.get("Content-Length")
                if length is None:
                    frames.append(Frame(headers))
                    continue
                if not length.isdigit() or int(length) > MAX_BODY:
                    raise FrameError(f"bad Content-Length {length!r}")
                self._pending, self._need = headers, int(length)
            if len(self._buf) < self._need:
                return frames
            body = bytes(self._buf[: self._need])
            del self._buf[: self._need]
            frames.append(Frame(self._pending, body))
            self._pending = None


def encode_command(line: str, headers: dict[str, str] | None = None) -> bytes:
    """One command frame. Refuses a line break in the command or a header: that would be a second command."""
    parts = [line, *(f"{k}: {v}" for k, v in (headers or {}).items())]
    for part in parts:
        if "\n" in part or "\r" in part:
            raise ValueError("a command must not contain a line break")
    return ("\n".join(parts) + "\n\n").encode("utf-8")
