"""Event templates taken from the real FreeSWITCH captures, so the stand-in sends what FreeSWITCH sends.

`build_templates(captures_dir)` reads the shipped transcripts once (at development time) and
turns every call into a *script*: the events of its legs in capture order, each header value
kept verbatim or replaced by a token (`["sub", ...]` for values naming the call's UUIDs,
numbers or caller name; `["T", k]` / `["E", k]` / `["S", k]` for a time equal to the time of
script step k; `["DUR", unit, what]` for billsec and friends). Events a *client* caused in the
capture (API, RECORD_*, MEDIA_BUG_*, PLAYBACK_*, the broadcast's playback execute) are cut out
of the scripts and kept as *on-demand* templates, whose channel headers are filled in at run
time from the channel's latest state. The result is written to `data/templates.json.gz`
(`python -m yangyang_rec.standin.templates CAPTURES_DIR`) and loaded by `load_templates()`.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote

from yangyang_rec.esl.frames import FrameReader, parse_event

DATA = Path(__file__).resolve().parent / "data" / "templates.json.gz"
STD_HEADERS = 13  # Event-Name .. Event-Sequence open every event
WAIT_MIN_S = 0.25  # a gap this long in a capture is a person (ringing, talking), not the switch

# scenario -> capture file, and the parties' identities in that capture
SCRIPTS = {
    "inbound": ("bridged-inbound-call-plain", {"OUT": "0335550100", "LINE": "2101", "NAME": "홍길동"}),
    "inbound_staff_hangup": ("bridged-staff-hangs-up-plain", {"OUT": "0335550100", "LINE": "2101", "NAME": "홍길동"}),
    "abandoned": ("abandoned-before-answer-plain", {"OUT": "0335550100", "LINE": "2101", "NAME": "홍길동"}),
    "busy": ("staff-busy-plain", {"OUT": "0335550100", "LINE": "2101", "NAME": "홍길동"}),
    "outbound": ("outbound-from-staff-plain", {"OUT": "0335550199", "LINE": "2101", "NAME": "Staff 2101"}),
    "transfer_aleg": ("blind-transfer-aleg-plain", {"OUT": "0335550100", "LINE": "2101", "LINE2": "2102", "NAME": "홍길동"}),
    "transfer_bleg": (
        "blind-transfer-bleg-nofollow-plain",
        {"OUT": "0335550100", "LINE": "2101", "LINE2": "2102", "NAME": "홍길동"},
    ),
    "dtmf": ("dtmf-during-call-plain", {"OUT": "0335550100", "LINE": "2101", "NAME": "홍길동"}),
    "shutdown": ("restart-mid-call-plain", {"OUT": "0335550100", "LINE": "2101", "NAME": "홍길동"}),
}
CLIENT_EVENTS = {
    "API", "RECORD_START", "RECORD_STOP", "MEDIA_BUG_START", "MEDIA_BUG_STOP",
    "PLAYBACK_START", "PLAYBACK_STOP", "PRIVATE_COMMAND",
}
CLIENT_VARS = re.compile(r"variable_(RECORD_STEREO|RECORD_DISCARDED|recording_follow_transfer|record_min_sec|record_.*|playback_.*)\Z")
PLAYBACK_VARS = ("variable_current_application", "variable_current_application_data",
                 "variable_current_application_response", "variable_last_app", "variable_last_arg")
DURATIONS = {
    "duration": ("end", "start"), "billsec": ("end", "answer"), "progresssec": ("progress", "start"),
    "answersec": ("answer", "start"), "waitsec": ("answer", "start"), "progress_mediasec": ("progress_media", "start"),
    "flow_billsec": ("end", "start"),
}
DURATION_VARS = {}
for _base, _pair in DURATIONS.items():
    _stem = _base[:-3]
    DURATION_VARS[f"variable_{_base}"] = ("s", *_pair)
    DURATION_VARS[f"variable_{_stem}msec" if _stem != "dura" else "variable_mduration"] = ("ms", *_pair)
    DURATION_VARS[f"variable_{_stem}usec" if _stem != "dura" else "variable_uduration"] = ("us", *_pair)
# on-demand events: where their own values go
ON_DEMAND_VALUES = {
    "Record-File-Path": "path", "Record-Completion-Cause": "cause", "Playback-File-Path": "file",
    "Playback-File-Type": "file_type", "DTMF-Digit": "digit", "API-Command": "command",
    "API-Command-Argument": "argument", "Job-UUID": "job", "Job-Command": "command",
    "Job-Command-Arg": "argument", "Application-Data": "app_data", "Application": "app",
    "Application-Response": "app_response", "Application-UUID": "app_uuid", "Hangup-Cause": "cause",
    "Bridge-A-Unique-ID": "bridge_a", "Bridge-B-Unique-ID": "bridge_b",
}
CHANNEL_PREFIXES = ("Channel-", "Caller-", "Other-", "Unique-ID", "Call-Direction", "Presence-", "Answer-State",
                    "Hangup-Cause")
STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\Z")


class CapturedEvent:
    """A plain event with its headers as a list: FreeSWITCH repeats some names (a CODEC event has
    Channel-Write-Codec-Name twice, a hangup Hangup-Cause twice), which a dict would lose."""

    def __init__(self, items: list[tuple[str, str]], body: str):
        self.items, self.body = items, body
        self.headers = dict(items)
        self.name = self.headers.get("Event-Name", "")

    def get(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


def plain_header_list(body: bytes) -> tuple[list[tuple[str, str]], str]:
    text = body.decode("utf-8")
    block, _, rest = text.partition("\n\n")
    items = []
    for line in block.split("\n"):
        name, _, value = line.partition(": ")
        items.append((name, unquote(value)))
    length = dict(items).get("Content-Length")
    inner = rest.encode("utf-8")[: int(length)].decode("utf-8") if length else ""
    return [(k, v) for k, v in items if k != "Content-Length"], inner


def capture_events(path: Path) -> list[CapturedEvent]:
    out = []
    for frame in FrameReader().feed(path.read_bytes()):
        if frame.content_type == "text/event-plain":
            out.append(CapturedEvent(*plain_header_list(frame.body)))
        elif frame.content_type == "text/event-json":
            ev = parse_event(frame)
            out.append(CapturedEvent([(k, v) for k, v in ev.headers.items() if k != "Content-Length"], ev.body))
    return out


def _sub_parts(value: str, names: dict[str, str]):
    """Split a value into literal text and names of call identities (["sub", lit, KEY, lit, ...])."""
    pattern = "|".join(
        re.escape(v) if not v.isdigit() else rf"(?<!\d){re.escape(v)}(?!\d)"
        for v in sorted(names, key=len, reverse=True)
    )
    parts, pos = [], 0
    for m in re.finditer(pattern, value):
        parts += [value[pos:m.start()], names[m.group(0)]]
        pos = m.end()
    if not parts:
        return value
    return ["sub", *parts, value[pos:]]


class _Tokenizer:
    def __init__(self, names: dict[str, str], times: list[int], stamps: list[float]):
        self.names = {v: k for k, v in names.items()}
        self.times, self.stamps = times, stamps
        self.lo, self.hi = min(times) - 600_000_000, max(times) + 600_000_000

    def nearest(self, us: float, upto: int) -> int:
        best = min(range(len(self.times)), key=lambda i: abs(self.times[i] - us))
        return min(best, upto)

    def same_second(self, second: int, seconds: list[int], upto: int) -> int:
        """The first step in that second (the switch stamps a whole second from the event's time)."""
        for i, s in enumerate(seconds):
            if s == second:
                return min(i, upto)
        return min(range(len(seconds)), key=lambda i: abs(seconds[i] - second))

    def value(self, name: str, value: str, step: int):
        if name in DURATION_VARS:
            return ["DUR", *DURATION_VARS[name]]
        if value.isdigit() and len(value) == 16 and self.lo <= int(value) <= self.hi:
            return ["T", self.nearest(int(value), step)]
        if value.isdigit() and len(value) == 10 and self.lo // 10**6 <= int(value) <= self.hi // 10**6:
            return ["E", self.same_second(int(value), [t // 10**6 for t in self.times], step)]
        if STAMP.match(value):
            local = int(datetime.strptime(value, "%Y-%m-%d %H:%M:%S").timestamp())
            return ["S", self.same_second(local, [int(s) for s in self.stamps], step)]
        return _sub_parts(value, self.names)


def _std(headers):
    """The 13 headers every event opens with, tokenized."""
    out = []
    for name, value in headers:
        token = {"Core-UUID": ["CORE"], "Event-Date-Local": ["EDL"], "Event-Date-GMT": ["EDG"],
                 "Event-Date-Timestamp": ["EDT"], "Event-Sequence": ["SEQ"]}.get(name, value)
        out.append([name, token])
    return out


def _is_playback(event) -> bool:
    return event.get("Application") == "playback" or "tone_stream" in event.get("variable_current_application_data")


def build_script(events, legs: list[str], names: dict[str, str], core: str):
    """The call's own events, tokenized, with the waits between them labelled."""
    keep, record_stops, bug_due = [], {}, False
    for e in events:
        if e.get("Unique-ID") not in legs:
            continue
        if e.name in ("RECORD_STOP", "MEDIA_BUG_STOP") and keep and (e.name == "RECORD_STOP" or bug_due):
            # where the switch closed the recording, relative to the call's own events
            marks = record_stops.setdefault(len(keep) - 1, {})
            marks["record_stop" if e.name == "RECORD_STOP" else "bug_stop"] = "ABC"[legs.index(e.get("Unique-ID"))]
            bug_due = e.name == "RECORD_STOP"
        if e.name in CLIENT_EVENTS or (e.name.startswith("CHANNEL_EXECUTE") and e.get("Application") == "playback"):
            continue
        keep.append(e)
    idmap = {legs[0]: "A"}
    if len(legs) > 1:
        idmap[legs[1]] = "B"
    if len(legs) > 2:
        idmap[legs[2]] = "C"
    ident = {**{v: k for k, v in names.items()}, **idmap, core: "CORE"}
    times = [int(e.get("Event-Date-Timestamp")) for e in keep]
    stamps = [datetime.strptime(e.get("Event-Date-Local"), "%Y-%m-%d %H:%M:%S").timestamp() for e in keep]
    tok = _Tokenizer({v: k for k, v in ident.items()}, times, stamps)
    steps, prev, hung, transferred = [], None, False, False
    transfer_api = {int(e.get("Event-Date-Timestamp")) for e in events if e.name == "API"
                    and e.get("API-Command") == "uuid_transfer"}
    for i, e in enumerate(keep):
        items = list(e.items)
        headers = _std(items[:STD_HEADERS])
        for name, value in items[STD_HEADERS:]:
            if CLIENT_VARS.match(name):
                continue
            if name in PLAYBACK_VARS and ("playback" in value or "tone_stream" in value or value == "FILE PLAYED"):
                continue
            headers.append([name, tok.value(name, value, i)])
        gap = (times[i] - prev) / 1e6 if prev else 0.0
        wait = None
        if gap >= WAIT_MIN_S:
            if any(prev < t <= times[i] for t in transfer_api):
                wait, transferred = "talk_transfer", True
            elif e.name == "CHANNEL_HANGUP" and e.get("Hangup-Cause") == "ORIGINATOR_CANCEL":
                wait = "ring"
            elif e.name in ("CODEC", "CHANNEL_ANSWER", "CHANNEL_PROGRESS"):
                wait = "ring"
            elif e.name == "CHANNEL_HANGUP" and transferred:
                wait = "talk2"
            elif e.name in ("CHANNEL_HANGUP", "RECV_INFO", "DTMF") and not hung and not transferred:
                wait = "talk"
            else:
                wait = "pause"
        if e.name == "CHANNEL_HANGUP":
            hung = True
        prev = times[i]
        leg = idmap[e.get("Unique-ID")]
        step = {"leg": leg, "name": e.name, "wait": wait, "gap": round(gap, 3), "headers": headers, "body": e.body}
        step.update(record_stops.get(i, {}))
        steps.append(step)
    return steps


def build_on_demand(events, legs: list[str], names: dict[str, str], core: str):
    """Templates of events a client's command causes, keyed by event name (+ application)."""
    ident = {v: k for k, v in names.items()}
    idmap = {legs[0]: "A"}
    out = {}
    for e in events:
        key = e.name
        if e.name.startswith("CHANNEL_EXECUTE") and e.get("Application") == "playback":
            key = e.name + ":playback"
        elif e.name not in CLIENT_EVENTS | {"DTMF", "RECV_INFO", "BACKGROUND_JOB", "HEARTBEAT", "RE_SCHEDULE",
                                             "SHUTDOWN", "MODULE_UNLOAD", "CHANNEL_HANGUP"}:
            continue
        if key in out and not (key in ("BACKGROUND_JOB", "API") and
                               {"Job-Command-Arg", "API-Command-Argument"} & set(e.headers)):
            continue
        items = list(e.items)
        names_only = [k for k, _ in items]
        has_channel = "Channel-State" in names_only
        pre, post = _std(items[:STD_HEADERS]), []
        if has_channel:
            start = names_only.index("Channel-State")
            var_idx = [i for i, k in enumerate(names_only) if k.startswith("variable_")]
            chan = [i for i, k in enumerate(names_only) if k.startswith(CHANNEL_PREFIXES)]
            end = (var_idx[-1] + 1) if var_idx else (chan[-1] + 1)
            middle, tail = items[STD_HEADERS:start], items[end:]
        else:
            middle, tail = items[STD_HEADERS:], []
        for name, value in middle:
            pre.append([name, ["V", ON_DEMAND_VALUES[name]] if name in ON_DEMAND_VALUES else
                        _sub_parts(value, {**ident, **idmap})])
        for name, value in tail:
            post.append([name, ["V", ON_DEMAND_VALUES[name]] if name in ON_DEMAND_VALUES else
                         _sub_parts(value, {**ident, **idmap})])
        with_vars = has_channel and any(k.startswith("variable_") for k in names_only)
        out[key] = {"pre": pre, "post": post, "channel": has_channel, "vars": with_vars, "body": e.body}
    return out


def build_templates(captures: Path) -> dict:
    scripts, on_demand = {}, {}
    for kind, (name, names) in SCRIPTS.items():
        events = capture_events(captures / f"{name}.txt")
        results = json.loads((captures / f"_summary-{name}.json").read_text())["results"]
        legs = list(results["legs"])
        core = next(e.get("Core-UUID") for e in events)
        scripts[kind] = build_script(events, legs, names, core)
        for key, tpl in build_on_demand(events, legs, names, core).items():
            on_demand.setdefault(key, tpl)
    for name in ("bgapi-plain", "api-errors-during-call-plain", "disconnect-notice-on-shutdown-plain"):
        events = capture_events(captures / f"{name}.txt")
        core = next(e.get("Core-UUID") for e in events)
        for key, tpl in build_on_demand(events, ["-"], {}, core).items():
            on_demand.setdefault(key, tpl)
    return {"scripts": scripts, "on_demand": on_demand}


@lru_cache(maxsize=1)
def load_templates() -> dict:
    with gzip.open(DATA, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def main(argv: list[str]) -> int:
    captures = Path(argv[0]) if argv else Path(__file__).resolve().parents[3] / "shared" / "esl-captures"
    data = build_templates(captures)
    DATA.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
    with open(DATA, "wb") as fh:
        fh.write(gzip.compress(raw, mtime=0))
    print(f"wrote {DATA} ({len(raw)} bytes of JSON)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
