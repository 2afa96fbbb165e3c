"""Calls of the stand-in: each placed call runs a script taken from a real capture, in its own greenlet.

The script gives every event of both legs in FreeSWITCH's order with the real headers; this
module fills in the call's identities and times, waits where people ring and talk, and lets a
client's commands (record, broadcast, kill, transfer) change the run as they do on a real switch.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import gevent
import gevent.event
import structlog

from yangyang_rec.standin import wav
from yangyang_rec.standin.events import CallValues, CompiledStep, OutEvent, StepEvent
from yangyang_rec.standin.templates import load_templates

log = structlog.get_logger(__name__)

SMALL_GAP_S = 0.25


def new_uuid() -> str:
    return str(uuidlib.uuid4())


class Clock:
    """Virtual time: runs `scale` times faster than the wall clock, so a 5 s talk at scale 10 lasts 0.5 s
    but every timestamp, duration and recording still says 5 s."""

    def __init__(self, scale: float = 1.0):
        self.scale = float(scale)
        self.wall0 = time.time()
        self.virt0 = self.wall0

    def now(self) -> float:
        return self.virt0 + (time.time() - self.wall0) * self.scale

    def now_us(self) -> int:
        return int(self.now() * 1_000_000)

    def wall_seconds(self, virtual_seconds: float) -> float:
        return max(0.0, virtual_seconds / self.scale)


@lru_cache(maxsize=64)
def _stamp_local(second: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))


@lru_cache(maxsize=64)
def _stamp_gmt(second: int) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(second))


def stamp_local(us: int) -> str:
    return _stamp_local(us // 1_000_000)


def stamp_gmt(us: int) -> str:
    return _stamp_gmt(us // 1_000_000)


@dataclass
class PlacedCall:
    """What a test or `simulate` placed, and what became of it (times are virtual epoch seconds)."""

    a_uuid: str
    b_uuid: str
    kind: str
    line: str
    outside: str
    caller_name: str = ""
    other_line: str = ""
    answered: bool = False
    started_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    transfer_to: str | None = None
    transfer_kind: str | None = None
    c_uuid: str | None = None
    hangup_by: str = "caller"
    dtmf: str = ""
    busy: bool = False
    talk_s: float = 0.0
    ring_s: float = 0.0
    scenario: str = ""
    done: gevent.event.Event = field(default_factory=gevent.event.Event, repr=False)
    recordings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        keys = ("a_uuid", "b_uuid", "c_uuid", "kind", "line", "other_line", "outside", "caller_name", "answered",
                "started_at", "answered_at", "ended_at", "transfer_to", "transfer_kind", "hangup_by", "dtmf", "busy",
                "ring_s", "talk_s", "scenario", "recordings")
        return {k: getattr(self, k) for k in keys}


@dataclass
class Recording:
    path: str
    channel: Channel
    stereo: bool
    started_us: int
    min_sec: float = 0.0
    limit_task: gevent.Greenlet | None = None


class Channel:
    """One leg as the switch sees it: its latest headers (for on-demand events and `show channels`)
    and the variables a client set on it."""

    def __init__(self, uuid: str, leg: str, run: CallRun):
        self.uuid = uuid
        self.leg = leg
        self.run = run
        self.vars: dict[str, str] = {}
        self.last: OutEvent | None = None
        self.state: dict[str, str] = {}
        self.recordings: list[Recording] = []
        self.bug_stops_due = 0
        self.created_us = 0
        self.gone = False

    @property
    def snapshot(self) -> list[tuple[str, str]]:
        """The channel part (Channel-State .. last variable) of the latest event that had variables,
        without the client-set variables (those are applied when an event is made)."""
        event = self.last
        if event is None:
            return []
        step = event.step
        headers = event.headers
        end = step.var_end + sum(1 for k in event.extra if k not in step.var_index)
        return [(k, v) for k, v in headers[step.channel_start:end]
                if not k.startswith("variable_") or k[9:] not in self.vars]

    def header(self, name: str, default: str = "") -> str:
        for k, v in self.snapshot:
            if k == name:
                return v
        return self.state.get(name, default)

    def getvar(self, name: str) -> str | None:
        if name in self.vars:
            return self.vars[name]
        value = self.header(f"variable_{name}", None)
        if value is None and name == "bridge_uuid":
            return None
        return value


def apply_vars(headers: list[tuple[str, str]], extra: dict[str, str]) -> list[tuple[str, str]]:
    """Set channel variables in an event: replace in place, or append after the last variable."""
    if not extra:
        return headers
    out = list(headers)
    pending = dict(extra)
    last = -1
    for i, (k, _) in enumerate(out):
        if k.startswith("variable_"):
            last = i
            name = k[9:]
            if name in pending:
                out[i] = (k, pending.pop(name))
    if pending:
        pos = last + 1 if last >= 0 else len(out)
        out[pos:pos] = [(f"variable_{k}", v) for k, v in pending.items()]
    return out


class CallRun:
    """Plays one call's script; `interrupt` lets api commands change its course."""

    def __init__(self, fs, call: PlacedCall, scenario: str, idents: dict[str, str]):
        self.fs = fs
        self.call = call
        self.script: list[dict] = []
        self.record_stop_legs: set[str] = set()
        self.use_script(scenario)
        self.idents = idents
        self.times: list[int] = []
        self.channels: dict[str, Channel] = {}
        self.wake = gevent.event.Event()
        self.pending: tuple | None = None
        self.greenlet: gevent.Greenlet | None = None
        self.finished = False
        self.taken_over = False  # the switch is tearing this call down itself (restart)
        self.call_values = CallValues(idents)

    def use_script(self, scenario: str) -> None:
        self.scenario = scenario
        self.call.scenario = scenario
        self.script = load_templates()["scripts"][scenario]
        self.record_stop_legs = {s["record_stop"] for s in self.script if "record_stop" in s}
        self.bug_stop_legs = {s["bug_stop"] for s in self.script if "bug_stop" in s}

    # ---- rendering -------------------------------------------------------------------------------
    def _resolve(self, spec, now_us: int, seq: int, index: int):
        if isinstance(spec, str):
            return spec
        kind = spec[0]
        if kind == "sub":
            idents = self.idents
            return "".join(part if i % 2 == 0 else idents.get(part, part) for i, part in enumerate(spec[1:]))
        if kind == "T":
            return str(self._time_of(spec[1], now_us))
        if kind == "E":
            return str(self._time_of(spec[1], now_us) // 1_000_000)
        if kind == "S":
            return stamp_local(self._time_of(spec[1], now_us))
        if kind == "EDT":
            return str(now_us)
        if kind == "EDL":
            return stamp_local(now_us)
        if kind == "EDG":
            return stamp_gmt(now_us)
        if kind == "SEQ":
            return str(seq)
        if kind == "CORE":
            return self.fs.core_uuid
        if kind == "DUR":
            return spec  # resolved once the whole event is known
        return ""

    def _time_of(self, k: int, now_us: int) -> int:
        return self.times[k] if k < len(self.times) else now_us

    def render_step(self, index: int, step: dict) -> OutEvent:
        now_us = self.fs.clock.now_us()
        if index >= len(self.times):
            self.times.extend([now_us] * (index + 1 - len(self.times)))
        self.times[index] = now_us
        seq = self.fs.next_seq()
        compiled = compiled_step(step)
        times, n = self.times, len(self.times)
        values = {}
        for i, kind, arg, spec in compiled.live:
            if kind == "T":
                values[i] = str(times[arg] if arg < n else now_us)
            elif kind == "EDT":
                values[i] = str(now_us)
            elif kind == "SEQ":
                values[i] = str(seq)
            elif kind == "EDL":
                values[i] = stamp_local(now_us)
            elif kind == "EDG":
                values[i] = stamp_gmt(now_us)
            elif kind == "CORE":
                values[i] = self.fs.core_uuid
            elif kind != "DUR":
                values[i] = self._resolve(spec, now_us, seq, index)
        if compiled.has_dur:
            _durations(compiled, values)
        channel = self.channels.get(step["leg"])
        extra = dict(channel.vars) if channel is not None and channel.vars else {}
        event = StepEvent(compiled, values, extra, self.call_values)
        if channel is not None and compiled.has_vars and compiled.channel_start >= 0:
            channel.last = event
        return event

    # ---- the run --------------------------------------------------------------------------------------
    def wait_for(self, label: str, gap: float, used: float = 0.0) -> None:
        call = self.call
        if label == "ring":
            seconds = call.ring_s
        elif label == "talk":
            seconds = call.talk_s if self.scenario not in ("busy",) else gap
            if self.scenario == "dtmf":
                seconds = call.talk_s / 5
        elif label == "talk_transfer":
            seconds = call.talk_s * 0.4
        elif label == "talk2":
            seconds = call.talk_s * 0.6
        else:
            seconds = gap
        self.fs.wait_unless_woken(self.wake, self.fs.clock.wall_seconds(max(0.0, seconds - used)))

    def run(self) -> None:
        fs, call = self.fs, self.call
        call.started_at = fs.clock.now()
        index = 0
        try:
            while index < len(self.script):
                step = self.script[index]
                if step["wait"]:
                    used = 0.0
                    if step["wait"] in ("talk", "talk_transfer") and call.dtmf and self.channels.get("A"):
                        used = self.send_dtmf_digits(call.dtmf)
                        call.dtmf = ""
                    if self.pending is None:
                        self.wait_for(step["wait"], step["gap"], used)
                    if self.pending is not None:
                        index = self.take_interrupt(step, index)
                        step = self.script[index]
                elif index % 16 == 0:
                    gevent.sleep(0)
                self.before_step(step)
                event = self.render_step(index, step)
                fs.emit(event)
                self.after_step(step, event)
                index += 1
        finally:
            if not self.taken_over:
                self.finish()

    def take_interrupt(self, step: dict, index: int) -> int:
        """Switch to the script for what happened (kill, transfer) at the same point of the call."""
        what, arg = self.pending
        self.pending = None
        self.wake.clear()
        label = step["wait"]
        target = None
        if what == "kill":
            if label == "ring":
                target = "abandoned"
            elif label == "talk" and self.scenario in ("inbound", "inbound_staff_hangup", "outbound", "dtmf"):
                target = "inbound_staff_hangup" if arg == "B" else ("outbound" if self.scenario == "outbound"
                                                                     else "inbound")
        elif what in ("transfer_aleg", "transfer_bleg") and label == "talk":
            target = what
            self.idents["LINE2"] = arg
            self.idents.setdefault("C", new_uuid())
            self.call.transfer_to, self.call.transfer_kind = arg, what.split("_")[1]
            self.call.c_uuid = self.idents["C"]
            label = "talk_transfer"
        if target is None:
            return index
        script = load_templates()["scripts"][target]
        for i, s in enumerate(script):
            if s["wait"] == label:
                self.use_script(target)
                return i
        return index

    def interrupt(self, what: str, arg: str = "") -> None:
        self.pending = (what, arg)
        self.wake.set()

    def before_step(self, step: dict) -> None:
        leg, name = step["leg"], step["name"]
        if leg not in self.channels and name in ("CHANNEL_STATE", "CHANNEL_OUTGOING", "CHANNEL_CREATE"):
            channel = Channel(self.idents[leg], leg, self)
            channel.created_us = self.fs.clock.now_us()
            self.channels[leg] = channel
            self.fs.channels[channel.uuid] = channel

    def after_step(self, step: dict, event: OutEvent) -> None:
        fs, call = self.fs, self.call
        leg, name = step["leg"], step["name"]
        channel = self.channels.get(leg)
        if name == "CHANNEL_ANSWER" and leg == "A":
            call.answered = True
            call.answered_at = fs.clock.now()
        elif name == "CHANNEL_CALLSTATE" and channel is not None:
            channel.state["Channel-Call-State"] = event.get("Channel-Call-State")
        elif name == "CHANNEL_STATE" and channel is not None:
            channel.state["Channel-State"] = event.get("Channel-State")
            channel.state["Channel-Call-State"] = event.get("Channel-Call-State")
            if event.get("Channel-State") == "CS_HANGUP" and leg not in self.record_stop_legs:
                for rec in list(channel.recordings):
                    fs.stop_recording(rec, "success-silence")
        elif name == "CHANNEL_HANGUP" and channel is not None and self.scenario == "transfer_bleg" and leg == "A":
            follow = channel.vars.get("recording_follow_transfer") == "true" or \
                channel.getvar("recording_follow_transfer") == "true"
            if follow and "B" in self.channels:
                fs.move_recordings(channel, self.channels["B"])
        if "record_stop" in step and step["record_stop"] in self.channels:
            stopping = self.channels[step["record_stop"]]
            for rec in list(stopping.recordings):
                later = step["record_stop"] in self.bug_stop_legs and step.get("bug_stop") != step["record_stop"]
                fs.stop_recording(rec, "success-silence", bug_stop=not later)
                stopping.bug_stops_due += later
        if "bug_stop" in step and step["bug_stop"] in self.channels:
            stopping = self.channels[step["bug_stop"]]
            for _ in range(stopping.bug_stops_due):
                fs.emit(fs.on_demand("MEDIA_BUG_STOP", stopping, {}))
            stopping.bug_stops_due = 0
        if name == "CHANNEL_DESTROY" and channel is not None:
            channel.gone = True
            fs.channels.pop(channel.uuid, None)

    def send_dtmf_digits(self, digits: str) -> float:
        """Digits from the citizen's phone (SIP INFO): RECV_INFO then DTMF, on the A leg only.
        Returns the talk time (virtual seconds) they took."""
        channel = self.channels["A"]
        each = min(0.7, self.call.talk_s / (len(digits) + 1))
        per = self.fs.clock.wall_seconds(each)
        for n, digit in enumerate(digits):
            if self.fs.wait_unless_woken(self.wake, per):
                return each * n
            info = f"Signal={digit}\r\nDuration=160\r\n"
            self.fs.emit(self.fs.on_demand("RECV_INFO", channel, {}, body=info))
            self.fs.emit(self.fs.on_demand("DTMF", channel, {"digit": digit}))
        return each * len(digits)

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        for channel in self.channels.values():
            for rec in list(channel.recordings):
                self.fs.stop_recording(rec, "success-silence", emit=False)
            self.fs.channels.pop(channel.uuid, None)
        self.call.ended_at = self.fs.clock.now()
        self.call.done.set()


_COMPILED: dict[int, CompiledStep] = {}


def compiled_step(step: dict) -> CompiledStep:
    compiled = _COMPILED.get(id(step))
    if compiled is None:
        compiled = _COMPILED[id(step)] = CompiledStep(step)
    return compiled


def compile_scripts(templates: dict) -> None:
    """Compile every script step now, so the first call of each kind does not pay for it mid-stream."""
    for script in templates["scripts"].values():
        for step in script:
            compiled_step(step)


def _durations(step: CompiledStep, values: dict[int, str]) -> None:
    """billsec & co, from the same event's epochs (as switch_channel does at hangup)."""
    epochs = {}
    for i, unit, end, start in step.durations:
        e = epochs.get(end)
        if e is None:
            e = epochs[end] = int(values.get(end, "0") or 0) if end is not None else 0
        b = epochs.get(start)
        if b is None:
            b = epochs[start] = int(values.get(start, "0") or 0) if start is not None else 0
        delta = max(0, e - b) if e and b else 0
        values[i] = str(delta if unit == "us" else delta // 1000 if unit == "ms" else delta // 1_000_000)


def record_vars(seconds: float, frames: int, channels: int, cause: str) -> dict[str, str]:
    size = 44 + frames * 2 * channels
    return {
        "record_file_size": str(size), "record_samples": str(frames), "record_seconds": str(int(seconds)),
        "record_ms": str(int(seconds * 1000)), "record_completion_cause": cause,
    }


def recording_path_ok(path: str) -> bool:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return True


def wav_write(rec: Recording, seconds: float) -> int:
    return wav.write_recording(Path(rec.path), seconds, 2 if rec.stereo else 1)
