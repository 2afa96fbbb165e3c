"""Rendering events to the bytes FreeSWITCH sends: `text/event-plain` (values URL-encoded the way
switch_url_encode does) and `text/event-json` (compact cJSON, raw UTF-8).

An `OutEvent` is rendered at most once per format however many clients receive it, and the
encoded `Name: value` lines are memoised, since most values repeat from call to call. A script
step's plain text is precompiled into literal text and fields; each call encodes its identities once
(`CallValues`), so per event only the times and the sequence number are new.
"""

from __future__ import annotations

import json

# switch_url_encode (FreeSWITCH 1.10): these ASCII bytes, control bytes and every byte >= 0x7F
_UNSAFE = set(b'\r\n "#%&+:;<=>?@[\\]^`{|}')
_ENCODE = [chr(b) if (0x20 < b < 0x7F and b not in _UNSAFE) else f"%{b:02X}" for b in range(256)]
_PLAIN_MEMO: dict[tuple[str, str], str] = {}
_JSON_MEMO: dict[tuple[str, str], str] = {}
_ENCODED_MEMO: dict[str, str] = {}
MEMO_MAX = 400_000
_NUMERIC = frozenset(("T", "E", "EDT", "SEQ", "DUR"))  # digits only: never encoded


_ASCII_TABLE = {b: _ENCODE[b] for b in range(128) if _ENCODE[b] != chr(b)}


def url_encode(value: str) -> str:
    if value.isascii():
        return value if value.isalnum() else value.translate(_ASCII_TABLE)
    return "".join([_ENCODE[b] for b in value.encode("utf-8")])


def _encoded(value: str) -> str:
    """url_encode for the stamps and Core-UUID, which repeat from event to event."""
    out = _ENCODED_MEMO.get(value)
    if out is None:
        if len(_ENCODED_MEMO) > 10_000:
            _ENCODED_MEMO.clear()
        out = _ENCODED_MEMO[value] = url_encode(value)
    return out


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



def plain_frame(headers_text: str, body: str) -> bytes:
    """A text/event-plain frame: the encoded header lines, the event's own body if any, the envelope."""
    if body:
        raw = body.encode("utf-8")
        inner = headers_text.encode("utf-8") + b"Content-Length: %d\n\n" % len(raw) + raw
    else:
        inner = headers_text.encode("utf-8") + b"\n"
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(inner) + inner

class OutEvent:
    """One event as sent: headers in FreeSWITCH's order (decoded values) and an optional body."""

    __slots__ = ("name", "_headers", "body", "_plain", "_json", "_map")

    def __init__(self, name: str, headers: list[tuple[str, str]], body: str = ""):
        self.name = name
        self._headers = headers
        self.body = body
        self._plain: bytes | None = None
        self._json: bytes | None = None
        self._map: dict[str, str] | None = None

    @property
    def headers(self) -> list[tuple[str, str]]:
        return self._headers

    def get(self, name: str, default: str = "") -> str:
        if self._map is None:
            self._map = dict(self.headers)
        return self._map.get(name, default)

    def plain(self) -> bytes:
        if self._plain is None:
            text = "".join([_plain_line(k, v) for k, v in self.headers])
            self._plain = plain_frame(text, self.body)
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


class CompiledStep:
    """A script step with its constant headers encoded once: per event only the tokens are rendered."""

    __slots__ = ("name", "names", "dyn", "plain_parts", "json_parts", "var_end", "var_index", "has_vars",
                 "channel_start", "has_dur", "body", "index", "plain_merged", "json_merged", "numeric", "live",
                 "plain_format", "live_fields", "sub_keys",
                 "constants", "durations")

    def __init__(self, step: dict):
        self.name = step["name"]
        self.body = step.get("body", "")
        self.names = [h[0] for h in step["headers"]]
        self.dyn = [(i, h[1], "\x00".join(map(str, h[1]))) for i, h in enumerate(step["headers"])
                    if not isinstance(h[1], str)]
        self.index = {}
        for i, name in enumerate(self.names):
            self.index.setdefault(name, i)
        self.plain_parts = [_plain_line(k, v) if isinstance(v, str) else "" for k, v in step["headers"]]
        self.json_parts = [_json_pair(k, v) if isinstance(v, str) else "" for k, v in step["headers"]]
        var_idx = [i for i, k in enumerate(self.names) if k.startswith("variable_")]
        self.has_vars = bool(var_idx)
        self.var_end = var_idx[-1] + 1 if var_idx else len(self.names)
        self.var_index = {self.names[i][9:]: i for i in var_idx}
        self.channel_start = self.names.index("Channel-State") if "Channel-State" in self.names else -1
        self.has_dur = any(spec[0] == "DUR" for _, spec, _ in self.dyn)
        # digits only (times, sequence, durations): never encoded, never memoised (each one is new)
        self.numeric = {i for i, spec, _ in self.dyn if spec[0] in ("T", "E", "EDT", "SEQ", "DUR")}
        self.plain_merged = _merge(self.plain_parts, {i for i, _, _ in self.dyn}, "")
        self.json_merged = _merge(self.json_parts, {i for i, _, _ in self.dyn}, ",")
        # per event only these are computed; identities come from the call's CallValues
        self.live = [(i, spec[0], spec[1] if len(spec) > 1 else None, spec) for i, spec, _ in self.dyn
                     if spec[0] != "sub"]
        self.plain_format = _plain_format(step["headers"])
        # billsec & co: (index, unit, index of the end epoch, of the start epoch) among the per-event values
        epoch_at = {self.names[i]: i for i, kind, _, _ in self.live if kind != "DUR"}
        self.durations = [(i, spec[1], epoch_at.get(f"variable_{spec[2]}_uepoch"),
                           epoch_at.get(f"variable_{spec[3]}_uepoch")) for i, spec, _ in self.dyn if spec[0] == "DUR"]
        self.constants = [_decode_line(line) if line else "" for line in self.plain_parts]
        self.sub_keys = {i: (key, spec) for i, spec, key in self.dyn if spec[0] == "sub"}
        self.live_fields = [(i, f"_{i}", kind in _NUMERIC) for i, kind, _, _ in self.live]


def _plain_format(headers: list) -> tuple[list[tuple[str, str]], str]:
    """The step's plain text as (encoded literal text, field) pairs and a tail: constants encoded once,
    a field for each identity of the call (url-encoding is byte-wise, so encoding the parts equals
    encoding the whole) and `_i` for each per-event value."""
    pairs: list[tuple[str, str]] = []
    text: list[str] = []

    def field(key: str) -> None:
        pairs.append(("".join(text), key))
        text.clear()

    for i, (name, spec) in enumerate(headers):
        if isinstance(spec, str):
            text.append(_plain_line(name, spec))
        elif spec[0] == "sub":
            text.append(name + ": ")
            for n, part in enumerate(spec[1:]):
                if n % 2 == 0:
                    text.append(url_encode(part))
                else:
                    field(part)
            text.append("\n")
        else:
            text.append(name + ": ")
            field(f"_{i}")
            text.append("\n")
    return pairs, "".join(text)


class CallValues(dict):
    """One call's identities, url-encoded on first use (the fields of its events' plain text), and the
    decoded value of each `sub` token, resolved once per call."""

    def __init__(self, idents: dict[str, str]):
        super().__init__()
        self.idents = idents
        self.decoded: dict[str, str] = {}

    def __missing__(self, key: str) -> str:
        value = self[key] = url_encode(self.idents.get(key, key))
        return value

    def sub(self, key: str, spec: list) -> str:
        value = self.decoded.get(key)
        if value is None:
            idents = self.idents
            value = self.decoded[key] = "".join(
                part if i % 2 == 0 else idents.get(part, part) for i, part in enumerate(spec[1:]))
        return value


class StepEvent(OutEvent):
    """An event of a call script: constant lines from the compiled step, the per-event values at `live`
    and the call's identities in `call_values`."""

    __slots__ = ("step", "live", "call_values", "_values", "extra")

    def __init__(self, step: CompiledStep, live: dict[int, str], extra: dict[str, str], call_values: CallValues):
        self.name = step.name
        self.step = step
        self.live = live
        self.call_values = call_values
        self._values = None
        self.extra = extra
        self.body = step.body
        self._plain = None
        self._json = None
        self._map = None
        self._headers = None

    @property
    def values(self) -> dict[int, str]:
        """Every token's value, by header index (identities resolved with the call's cache)."""
        if self._values is None:
            live, calls = self.live, self.call_values
            self._values = {i: live[i] if spec[0] != "sub" else calls.sub(key, spec) for i, spec, key in self.step.dyn}
        return self._values

    @property
    def headers(self) -> list[tuple[str, str]]:
        if self._headers is None:
            step, values = self.step, self.values
            out = []
            for i, name in enumerate(step.names):
                if i in values:
                    out.append((name, values[i]))
                else:
                    out.append((name, step.constants[i]))
            self._headers = _with_extra(out, self.extra, step)
        return self._headers

    def get(self, name: str, default: str = "") -> str:
        if self.extra or self._headers is not None:
            return OutEvent.get(self, name, default)
        i = self.step.index.get(name)
        if i is None:
            return default
        if i in self.live:
            return self.live[i]
        if self.step.sub_keys.get(i) is not None:
            return self.call_values.sub(*self.step.sub_keys[i])
        return self.step.constants[i]

    def _lines(self, parts: list[str], encode) -> list[str]:
        step = self.step
        parts = list(parts)
        names = step.names
        for i, v in self.values.items():
            parts[i] = encode(names[i], v)
        if self.extra:
            added = []
            for k, v in self.extra.items():
                i = step.var_index.get(k)
                if i is not None:
                    parts[i] = encode(names[i], v)
                else:
                    added.append(encode(f"variable_{k}", v))
            parts[step.var_end:step.var_end] = added
        return parts

    def _fast(self, merged, encode, sep: str) -> str:
        segments, slots = merged
        segments = list(segments)
        names = self.step.names
        numeric = self.step.numeric
        plain = encode is _plain_line
        for i, v in self.values.items():
            if i in numeric:
                segments[slots[i]] = f"{names[i]}: {v}\n" if plain else f'"{names[i]}":"{v}"'
            else:
                segments[slots[i]] = encode(names[i], v)
        return sep.join(segments)

    def plain(self) -> bytes:
        if self._plain is None:
            if self.extra:
                text = "".join(self._lines(self.step.plain_parts, _plain_line))
            else:
                mapping = self.call_values
                live = self.live
                for i, field, numeric in self.step.live_fields:
                    mapping[field] = live[i] if numeric else _encoded(live[i])
                pairs, tail = self.step.plain_format
                text = "".join([lit + mapping[key] for lit, key in pairs]) + tail
            self._plain = plain_frame(text, self.body)
        return self._plain

    def json(self) -> bytes:
        if self._json is None:
            pairs = self._lines(self.step.json_parts, _json_pair) if self.extra else \
                [self._fast(self.step.json_merged, _json_pair, ",")]
            if self.body:
                body = self.body.encode("utf-8")
                pairs.append(_json_pair("Content-Length", str(len(body))))
                pairs.append(_json_pair("_body", self.body))
            inner = ("{" + ",".join(pairs) + "}").encode("utf-8")
            self._json = b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(inner) + inner
        return self._json


def _merge(parts: list[str], dynamic: set[int], sep: str) -> tuple[list[str], list[int]]:
    """Constant runs joined once: (segments, header index -> segment slot for each dynamic header)."""
    segments: list[str] = []
    slots: dict[int, int] = {}
    run: list[str] = []
    for i, part in enumerate(parts):
        if i in dynamic:
            if run:
                segments.append(sep.join(run))
                run = []
            slots[i] = len(segments)
            segments.append("")
        else:
            run.append(part)
    if run:
        segments.append(sep.join(run))
    return segments, slots


def _decode_line(line: str) -> str:
    from urllib.parse import unquote

    return unquote(line.partition(": ")[2][:-1])


def _with_extra(headers: list[tuple[str, str]], extra: dict[str, str], step: CompiledStep):
    if not extra:
        return headers
    out = list(headers)
    added = []
    for k, v in extra.items():
        i = step.var_index.get(k)
        if i is not None:
            out[i] = (out[i][0], v)
        else:
            added.append((f"variable_{k}", v))
    out[step.var_end:step.var_end] = added
    return out


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
