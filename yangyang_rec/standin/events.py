"""Rendering events to the bytes FreeSWITCH sends: `text/event-plain` (values URL-encoded the way
switch_url_encode does) and `text/event-json` (compact cJSON, raw UTF-8).

An `OutEvent` is rendered at most once per format however many clients receive it, and the
encoded `Name: value` lines are memoised, since most values repeat from call to call.
"""

from __future__ import annotations

import json

# switch_url_encode (FreeSWITCH 1.10): these ASCII bytes, control bytes and every byte >= 0x7F
_UNSAFE = set(b'\r\n "#%&+:;<=>?@[\\]^`{|}')
_ENCODE = [chr(b) if (0x20 < b < 0x7F and b not in _UNSAFE) else f"%{b:02X}" for b in range(256)]
_PLAIN_MEMO: dict[tuple[str, str], str] = {}
_JSON_MEMO: dict[tuple[str, str], str] = {}
MEMO_MAX = 400_000


def url_encode(value: str) -> str:
    if value.isascii() and value.isalnum():
        return value
    return "".join([_ENCODE[b] for b in value.encode("utf-8")])


def _json_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _plain_line(name: str, value: str) -> str:
    key = (name, value)
    line = _PLAIN_MEMO.get(key)
    if line is None:
        if len(_PLAIN_MEMO) > MEMO_MAX:
            _PLAIN_MEMO.clear()
        line = _PLAIN_MEMO[key] = f"{name}: {url_encode(value)}\n"
    return line


def _json_pair(name: str, value: str) -> str:
    key = (name, value)
    pair = _JSON_MEMO.get(key)
    if pair is None:
        if len(_JSON_MEMO) > MEMO_MAX:
            _JSON_MEMO.clear()
        pair = _JSON_MEMO[key] = f"{_json_str(name)}:{_json_str(value)}"
    return pair


class OutEvent:
    """One event as sent: headers in FreeSWITCH's order (decoded values) and an optional body."""

    __slots__ = ("name", "headers", "body", "_plain", "_json", "_map")

    def __init__(self, name: str, headers: list[tuple[str, str]], body: str = ""):
        self.name = name
        self.headers = headers
        self.body = body
        self._plain: bytes | None = None
        self._json: bytes | None = None
        self._map: dict[str, str] | None = None

    def get(self, name: str, default: str = "") -> str:
        if self._map is None:
            self._map = dict(self.headers)
        return self._map.get(name, default)

    def plain(self) -> bytes:
        if self._plain is None:
            text = "".join([_plain_line(k, v) for k, v in self.headers])
            if self.body:
                body = self.body.encode("utf-8")
                inner = text.encode("utf-8") + b"Content-Length: %d\n\n" % len(body) + body
            else:
                inner = text.encode("utf-8") + b"\n"
            self._plain = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(inner) + inner
        return self._plain

    def json(self) -> bytes:
        if self._json is None:
            pairs = [_json_pair(k, v) for k, v in self.headers]
            if self.body:
                body = self.body.encode("utf-8")
                pairs.append(_json_pair("Content-Length", str(len(body))))
                pairs.append(_json_pair("_body", self.body))
            inner = ("{" + ",".join(pairs) + "}").encode("utf-8")
            self._json = b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(inner) + inner
        return self._json

    def render(self, fmt: str) -> bytes:
        return self.json() if fmt == "json" else self.plain()


def reply(text: str, extra: dict[str, str] | None = None) -> bytes:
    """A `command/reply` frame."""
    lines = ["Content-Type: command/reply", f"Reply-Text: {text}", *(f"{k}: {v}" for k, v in (extra or {}).items())]
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def api_response(body: str) -> bytes:
    raw = body.encode("utf-8")
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(raw) + raw


def disconnect_notice(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n" % len(raw) + raw


GREETING = b"Content-Type: auth/request\n\n"
GOODBYE = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
SHUTTING_DOWN = "The system is being shut down.\n"
