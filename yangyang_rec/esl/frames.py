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
import re
from dataclasses import dataclass
from itertools import repeat
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


class Event:
    """One FreeSWITCH event: headers in arrival order (decoded) and its own body, if any.

    A plain event keeps its values as received (still URL-encoded, already split into lines) and
    decodes a value when it is read: the daemon reads about ten of an event's ~150 headers, and
    decoding dominated its CPU time. `headers` decodes them all, once.
    """

    __slots__ = ("_headers", "_encoded", "body", "raw_size")

    def __init__(self, headers: dict[str, str], body: str = "", raw_size: int = 0) -> None:
        self._headers: dict[str, str] | None = headers
        self._encoded: dict[str, str] | None = None
        self.body = body
        self.raw_size = raw_size

    @classmethod
    def url_encoded(cls, encoded: dict[str, str], body: str = "", raw_size: int = 0) -> Event:
        """An event from values split per line but not yet URL-decoded."""
        event = cls({}, body, raw_size)
        event._headers, event._encoded = None, encoded
        return event

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = {k: _decode(v) for k, v in self._encoded.items()}
        return self._headers

    @property
    def name(self) -> str:
        return self.get("Event-Name")

    def get(self, key: str, default: str = "") -> str:
        if self._headers is not None:
            return self._headers.get(key, default)
        value = self._encoded.get(key)
        return default if value is None else _decode(value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.headers, self.body) == (other.headers, other.body)

    def __repr__(self) -> str:
        return f"Event({self.headers!r}, {self.body!r}, raw_size={self.raw_size})"


def _decode(value: str) -> str:
    return unquote(value, errors="replace") if "%" in value else value


# Header names on the fast path: printable ASCII without blanks or ':' (every name FreeSWITCH sends).
_PLAIN_NAMES = re.compile(r"[!-9;-~]+")


def _split_header_lines(block: str, decode: bool) -> dict[str, str]:
    """Split a header block into a dict, URL-decoding each value after the split when `decode`.

    An event has ~150 headers and this runs for every event, so the common case is split by
    C-level string methods: one `Name: value` per line, names plain ASCII, no carriage return (a
    repeated name keeps its first place and its last value, as in the loop). Anything else (a line
    that is not a header, an empty name, a name with a blank) goes through the careful loop, which
    gives the same result or the error.
    """
    if "\r" not in block:
        lines = block.split("\n")
        try:
            headers = dict(map(str.split, lines, repeat(": "), repeat(1)))
        except ValueError:  # a line without ": "
            headers = {}
        if headers and "" not in headers and _PLAIN_NAMES.fullmatch("".join(headers)):
            return {k: _decode(v) for k, v in headers.items()} if decode else headers
    return _split_header_lines_carefully(block, decode)


def _split_header_lines_carefully(block: str, decode: bool) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split("\n"):
        line = line.rstrip("\r")
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise EventError(f"header line without 'Name: value': {line[:80]!r}")
        value = value[1:] if value.startswith(" ") else value
        headers[name] = _decode(value) if decode else value
    return headers


def parse_plain_event(body: bytes) -> Event:
    """Parse a text/event-plain body. Values are URL-decoded per line, when read (see module doc)."""
    text = body.decode("utf-8", errors="replace")
    block, sep, rest = text.partition("\n\n")
    encoded = _split_header_lines(block, decode=False)
    if "Event-Name" not in encoded:
        raise EventError("event without Event-Name")
    inner = ""
    if "Content-Length" in encoded:
        try:
            length = int(_decode(encoded["Content-Length"]))
        except ValueError:
            raise EventError(f"bad Content-Length {_decode(encoded['Content-Length'])!r}") from None
        raw = rest.encode("utf-8", errors="replace")
        inner = raw[:length].decode("utf-8", errors="replace")
    return Event.url_encoded(encoded, inner, len(body))


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
