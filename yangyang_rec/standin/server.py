"""The stand-in switch: a gevent TCP server speaking the event socket, the live calls, and faults on demand."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import gevent
import gevent.event
import gevent.socket
import structlog
from gevent.server import StreamServer

from yangyang_rec.standin import api as api_commands
from yangyang_rec.standin import events as ev
from yangyang_rec.standin.calls import (
    CallRun,
    Channel,
    Clock,
    PlacedCall,
    Recording,
    apply_vars,
    compile_scripts,
    new_uuid,
    record_vars,
    recording_path_ok,
    stamp_gmt,
    stamp_local,
    wav_write,
)
from yangyang_rec.standin.events import OutEvent
from yangyang_rec.standin.templates import load_templates

log = structlog.get_logger(__name__)



class Client:
    """One event-socket connection: its auth state, subscriptions, filters and outgoing queue."""

    def __init__(self, fs: FreeSwitchStandIn, sock, address):
        self.fs = fs
        self.sock = sock
        self.address = address
        self.authed = False
        self.fmt: str | None = None
        self.all = False
        self.names: set[str] = set()
        self.subclasses: set[str] = set()
        self.nixed: set[str] = set()
        self.filters: list[tuple[str, str]] = []
        self.outbox: list[bytes | None] = []  # None = close after what is before it
        self.ready = gevent.event.Event()
        self.closed = False
        self.writer = gevent.spawn(self._write_loop)

    # ---- outgoing ----------------------------------------------------------------------------------
    def send(self, data: bytes | None) -> None:
        if not self.closed:
            self.outbox.append(data)
            self.ready.set()

    @property
    def idle(self) -> bool:
        """Nothing waits to be written to this client."""
        return not self.outbox

    def wants(self, event: OutEvent) -> bool:
        if self.fmt is None or self.closed:
            return False
        name = event.name
        if name in self.nixed:
            return False
        if not self.all and name not in self.names:
            if not (name == "CUSTOM" and event.get("Event-Subclass") in self.subclasses):
                return False
        if self.filters:
            return any(event.get(h) == v for h, v in self.filters)
        return True

    def offer(self, event: OutEvent) -> None:
        if self.wants(event):
            self.outbox.append(event.render(self.fmt))
            self.ready.set()

    def close_after(self, data: bytes) -> None:
        self.send(data)
        self.send(None)

    def _write_loop(self) -> None:
        try:
            while True:
                self.ready.wait()
                self.ready.clear()
                batch, self.outbox = self.outbox, []
                if not batch:
                    continue
                end = None in batch
                if end:
                    batch = batch[: batch.index(None)]
                self.fs.hold_writes()
                if batch:
                    self.sock.sendall(b"".join(batch))
                if end:
                    break
        except OSError:
            pass
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(gevent.socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.fs.clients.discard(self)

    # ---- incoming ----------------------------------------------------------------------------------
    def serve(self) -> None:
        self.send(ev.GREETING)
        buf = b""
        try:
            while not self.closed:
                data = self.sock.recv(65536)
                if not data:
                    break
                buf += data.replace(b"\r\n", b"\n")
                while b"\n\n" in buf and not self.closed:
                    block, buf = buf.split(b"\n\n", 1)
                    if block.strip():
                        self.command(block.decode("utf-8", errors="replace"))
        except OSError:
            pass
        finally:
            if not self.closed:
                self.send(None)
                self.writer.join(timeout=2)
                self.shutdown()

    def command(self, block: str) -> None:
        lines = block.strip("\n").split("\n")
        line, extra = lines[0].strip(), {}
        for header in lines[1:]:
            k, _, v = header.partition(":")
            extra[k.strip()] = v.strip()
        verb, _, rest = line.partition(" ")
        if not self.authed:
            if verb == "auth":
                if rest == self.fs.password:
                    self.authed = True
                    self.send(ev.reply("+OK accepted"))
                else:
                    self.send(ev.reply("-ERR invalid"))
                    self.close_after(ev.disconnect_notice(ev.GOODBYE))
                return
            self.send(ev.reply("-ERR command not found"))
            return
        handler = getattr(self, f"cmd_{verb}", None)
        if handler is None:
            self.send(ev.reply("-ERR command not found"))
            return
        handler(rest, extra)

    def cmd_event(self, rest: str, extra) -> None:
        words = rest.split()
        fmt = words[0] if words and words[0] in ("plain", "json", "xml") else "plain"
        names = words[1:] if words and words[0] in ("plain", "json", "xml") else words
        self.fmt = "json" if fmt == "json" else "plain"
        custom = False
        for name in names:
            if name == "ALL":
                self.all = True
            elif name == "CUSTOM":
                custom = True
                self.names.add(name)
            elif custom:
                self.subclasses.add(name)
            else:
                self.names.add(name)
            self.nixed.discard(name)
        self.send(ev.reply(f"+OK event listener enabled {fmt}"))

    def cmd_myevents(self, rest: str, extra) -> None:
        words = rest.split()
        uuid = words[0] if words else ""
        self.fmt = "json" if "json" in words[1:] else "plain"
        self.all = True
        self.filters = [("Unique-ID", uuid)]
        self.send(ev.reply("+OK Events Enabled"))

    def cmd_noevents(self, rest: str, extra) -> None:
        self.fmt, self.all = None, False
        self.names.clear()
        self.subclasses.clear()
        self.send(ev.reply("+OK no longer listening for events"))

    def cmd_nixevent(self, rest: str, extra) -> None:
        for name in rest.split():
            self.names.discard(name)
            if self.all:
                self.nixed.add(name)
        self.send(ev.reply("+OK events nixed"))

    def cmd_filter(self, rest: str, extra) -> None:
        words = rest.split(" ", 2)
        if words and words[0] == "delete":
            header = words[1] if len(words) > 1 else ""
            value = words[2] if len(words) > 2 else ""
            self.filters = [f for f in self.filters if not (f[0] == header and (not value or f[1] == value))]
            self.send(ev.reply(f"+OK filter deleted. [{header}][{value}]"))
            return
        header = words[0] if words else ""
        value = " ".join(words[1:])
        self.filters.append((header, value))
        self.send(ev.reply(f"+OK filter added. [{header}]=[{value}]"))

    def cmd_log(self, rest: str, extra) -> None:
        level = rest.strip() or "7"
        self.send(ev.reply(f"+OK log level {level} [{level}]"))

    def cmd_nolog(self, rest: str, extra) -> None:
        self.send(ev.reply("+OK no longer logging"))

    def cmd_sendmsg(self, rest: str, extra) -> None:
        uuid = rest.strip()
        if uuid in self.fs.channels:
            self.send(ev.reply("+OK"))
        else:
            self.send(ev.reply(f"-ERR invalid session id [{uuid}]"))

    def cmd_exit(self, rest: str, extra) -> None:
        self.send(ev.reply("+OK bye"))
        self.close_after(ev.disconnect_notice(ev.GOODBYE))

    def cmd_api(self, rest: str, extra) -> None:
        body, after = self.fs.api(rest)
        self.send(ev.api_response(body))
        if after:
            after()

    def cmd_bgapi(self, rest: str, extra) -> None:
        job = extra.get("Job-UUID") or new_uuid()
        self.send(ev.reply(f"+OK Job-UUID: {job}", {"Job-UUID": job}))

        def background():
            body, after = self.fs.api(rest, log_event=False)
            cmd, _, arg = rest.partition(" ")
            values = {"job": job, "command": cmd, "argument": arg}
            self.fs.emit(self.fs.on_demand("BACKGROUND_JOB", None, values, body=body, drop_empty=("argument",)))
            if after:
                after()

        gevent.spawn(background)


class FreeSwitchStandIn:
    """See the package docstring; every public method is safe to call from a test's greenlet."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8021, password: str = "ClueCon", time_scale: float = 1.0):
        self.host = host
        self.port = port
        self.password = password
        self.clock = Clock(time_scale)
        self.time_scale = float(time_scale)
        self.core_uuid = new_uuid()
        self.started_wall = time.time()
        self.sessions_since_start = 0
        self.seq = 0
        self.clients: set[Client] = set()
        self.channels: dict[str, Channel] = {}
        self.calls: list[PlacedCall] = []
        self.runs: list[CallRun] = []
        self.api_log: list[tuple[float, str]] = []
        self.server: StreamServer | None = None
        # faults
        self.failing_records: dict[str, str] = {}
        self.duplicates: dict[str, int] = {}
        self.delay_until = 0.0
        self.stall_until = 0.0
        self.templates = load_templates()
        compile_scripts(self.templates)

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> FreeSwitchStandIn:
        self.server = StreamServer((self.host, self.port), self._handle)
        self.server.init_socket()
        self.server.start()
        self.port = self.server.server_port
        log.info("standin.listening", host=self.host, port=self.port, core=self.core_uuid)
        return self

    def stop(self) -> None:
        for run in list(self.runs):
            if run.greenlet is not None:
                run.greenlet.kill(block=False)
                run.finish()
        for client in list(self.clients):
            client.send(None)  # flush what is queued, then close
        for client in list(self.clients):
            client.writer.join(timeout=5)
            client.shutdown()
        if self.server is not None:
            self.server.stop(timeout=1)
            self.server = None

    def _handle(self, sock, address) -> None:
        client = Client(self, sock, address)
        self.clients.add(client)
        client.serve()

    # ---- events ------------------------------------------------------------------------------------------
    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def emit(self, event: OutEvent) -> None:
        if self.delay_until and time.time() < self.delay_until:
            gevent.sleep(self.delay_until - time.time())
        times = 1 + self.duplicates.get(event.name, 0)
        for client in list(self.clients):
            for _ in range(times):
                client.offer(event)

    def hold_writes(self) -> None:
        while self.stall_until and time.time() < self.stall_until:
            gevent.sleep(self.stall_until - time.time())

    def wait_unless_woken(self, wake: gevent.event.Event, seconds: float) -> bool:
        """Sleep `seconds` of wall time; True if woken early by a command."""
        if seconds <= 0:
            gevent.sleep(0)
            return wake.is_set()
        return wake.wait(timeout=seconds)

    def on_demand(self, key: str, channel: Channel | None, values: dict[str, str], body: str = "",
                  drop_empty: tuple[str, ...] = ()) -> OutEvent:
        """An event a command causes, with the channel's current headers in the middle."""
        tpl = self.templates["on_demand"][key]
        now_us = self.clock.now_us()
        seq = self.next_seq()
        idents = channel.run.idents if channel is not None else {}

        def resolve(spec):
            if isinstance(spec, str):
                return spec
            kind = spec[0]
            if kind == "V":
                return values.get(spec[1], "")
            if kind == "sub":
                return "".join(p if i % 2 == 0 else idents.get(p, p) for i, p in enumerate(spec[1:]))
            return {"EDT": str(now_us), "EDL": stamp_local(now_us), "EDG": stamp_gmt(now_us),
                    "SEQ": str(seq), "CORE": self.core_uuid}.get(kind, "")

        headers = []
        for name, spec in tpl["pre"]:
            if isinstance(spec, list) and spec[0] == "V" and spec[1] in drop_empty and not values.get(spec[1]):
                continue
            headers.append((name, resolve(spec)))
        if tpl["channel"] and channel is not None:
            if tpl["vars"]:
                headers += apply_vars(channel.snapshot, channel.vars)
            else:
                headers += [(k, v) for k, v in channel.snapshot if not k.startswith("variable_")]
        headers += [(name, resolve(spec)) for name, spec in tpl["post"]]
        name = key.split(":")[0]
        return OutEvent(name, headers, body if body or not tpl.get("body") else tpl["body"])

    def duplicate_events(self, name: str, times: int = 1) -> None:
        self.duplicates[name] = times

    def delay_events(self, seconds: float) -> None:
        self.delay_until = time.time() + seconds

    def stall(self, seconds: float) -> None:
        self.stall_until = time.time() + seconds

    def send_malformed(self) -> None:
        """A frame whose Content-Length promises more than the event holds, then a broken event."""
        bad = b"Content-Length: 40\nContent-Type: text/event-plain\n\nEvent-Name CHANNEL_ANSWER no colon here\n\n"
        for client in list(self.clients):
            if client.authed:
                client.send(bad)

    def fail_uuid_record(self, a_uuid_or_line: str, reply: str = "-ERR Cannot record session!") -> None:
        self.failing_records[a_uuid_or_line] = reply

    # ---- calls -------------------------------------------------------------------------------------------
    def place_call(self, kind: str = "inbound", line: str = "2101", outside: str = "0335550100",
                   caller_name: str = "홍길동", ring_s: float = 1.0, talk_s: float = 5.0, answer: bool = True,
                   hangup_by: str = "caller", transfer_to: str | None = None, transfer_kind: str | None = None,
                   dtmf: str = "", busy: bool = False, other_line: str = "2102") -> PlacedCall:
        if kind not in ("inbound", "outbound", "internal"):
            raise ValueError(f"kind must be inbound, outbound or internal, not {kind!r}")
        a, b = new_uuid(), new_uuid()
        call = PlacedCall(a_uuid=a, b_uuid=b, kind=kind, line=line, outside=outside, caller_name=caller_name,
                          other_line=other_line if kind == "internal" else "", hangup_by=hangup_by, dtmf=dtmf,
                          busy=busy, ring_s=ring_s, talk_s=talk_s)
        if busy:
            scenario = "busy"
        elif not answer:
            scenario = "abandoned"
        elif transfer_to and transfer_kind in (None, "aleg", "blind"):
            scenario = "transfer_aleg"
        elif transfer_to:
            scenario = "transfer_bleg"
        elif kind == "outbound":
            scenario = "outbound"
        else:
            scenario = "inbound_staff_hangup" if hangup_by in ("staff", "callee") else "inbound"
        idents = {"A": a, "B": b, "CORE": self.core_uuid}
        if kind == "inbound":
            idents.update(OUT=outside, LINE=line, NAME=caller_name)
        elif kind == "outbound":
            idents.update(OUT=outside, LINE=line, NAME=caller_name or f"Staff {line}")
        else:
            idents.update(OUT=line, LINE=other_line, NAME=caller_name or f"Staff {line}")
        if transfer_to:
            call.c_uuid = new_uuid()
            idents.update(C=call.c_uuid, LINE2=transfer_to)
            call.transfer_to, call.transfer_kind = transfer_to, transfer_kind or "aleg"
        call.scenario = scenario
        run = CallRun(self, call, scenario, idents)
        self.calls.append(call)
        self.runs.append(run)
        self.sessions_since_start += 2
        run.greenlet = gevent.spawn(run.run)
        return call

    def wait_idle(self, timeout: float = 30) -> bool:
        deadline = time.time() + timeout
        for call in list(self.calls):
            if not call.done.wait(timeout=max(0.0, deadline - time.time())):
                return False
        return True

    def run_traffic(self, lines, calls: int = 200, rate: float = 20.0, seed: int = 1) -> list[PlacedCall]:
        """Place the office mix; `rate` is calls per second of simulated time (wall: rate * time_scale)."""
        from yangyang_rec.standin.traffic import office_mix

        placed = []
        for spec in office_mix(lines, calls, seed):
            placed.append(self.place_call(**spec))
            gevent.sleep(1.0 / (rate * self.time_scale) if rate > 0 else 0)
        return placed

    def restart(self, down_s: float = 0.5) -> None:
        """As `fsctl shutdown` then a fresh start: teardown events, the notice, EOF, a new Core-UUID."""
        self.emit(self.on_demand("SHUTDOWN", None, {}))
        shutdown_script = self.templates["scripts"]["shutdown"]
        start = next(i for i, s in enumerate(shutdown_script) if s["wait"] == "talk")
        for run in list(self.runs):
            if run.finished:
                continue
            run.taken_over = True
            if run.greenlet is not None:
                run.greenlet.kill(block=True)
            for index in range(start, len(shutdown_script)):
                step = shutdown_script[index]
                if step["leg"] not in run.channels:
                    continue
                event = run.render_step(index, step)
                self.emit(event)
                run.after_step(step, event)
            run.finish()
        for _ in range(3):
            self.emit(self.on_demand("MODULE_UNLOAD", None, {}))
        for client in list(self.clients):
            client.close_after(ev.disconnect_notice(ev.SHUTTING_DOWN))
        for client in list(self.clients):
            client.writer.join(timeout=2)
            client.shutdown()
        if self.server is not None:
            self.server.stop(timeout=1)
            self.server = None
        gevent.sleep(down_s)
        self.core_uuid = new_uuid()
        self.started_wall = time.time()
        self.sessions_since_start = 0
        self.channels.clear()
        self.runs = [r for r in self.runs if not r.finished]
        self.start()

    # ---- recordings -------------------------------------------------------------------------------------
    def start_recording(self, channel: Channel, path: str, limit: float | None) -> str:
        failing = self.failing_records.get(channel.uuid) or self.failing_records.get(channel.run.call.line)
        if failing:
            return failing.rstrip("\n") + "\n"
        if not recording_path_ok(path):
            return "-ERR Cannot record session!\n"
        stereo = (channel.vars.get("RECORD_STEREO") or channel.getvar("RECORD_STEREO") or "").lower() == "true"
        try:
            from yangyang_rec.standin import wav
            wav.create_empty(Path(path), 2 if stereo else 1)
        except OSError:
            return "-ERR Cannot record session!\n"
        min_sec = channel.vars.get("record_min_sec") or "0"
        rec = Recording(path, channel, stereo, self.clock.now_us(), float(min_sec) if min_sec.isdigit() else 0.0)
        channel.recordings.append(rec)
        channel.run.call.recordings.append(path)
        if limit:
            rec.limit_task = gevent.spawn_later(self.clock.wall_seconds(limit), self.stop_recording, rec, "success-maxtime")
        return "+OK Success\n"

    def recording_started_events(self, channel: Channel, path: str) -> None:
        self.emit(self.on_demand("RECORD_START", channel, {"path": path}))
        self.emit(self.on_demand("MEDIA_BUG_START", channel, {}))

    def stop_recording(self, rec: Recording, cause: str, emit: bool = True, bug_stop: bool = True) -> None:
        channel = rec.channel
        if rec not in channel.recordings:
            return
        channel.recordings.remove(rec)
        if rec.limit_task is not None and rec.limit_task is not gevent.getcurrent():
            rec.limit_task.kill(block=False)
        seconds = max(0.0, (self.clock.now_us() - rec.started_us) / 1e6)
        extra: dict[str, str] = {}
        if rec.min_sec and seconds < rec.min_sec:
            cause = "input-too-short"
            frames = int(seconds * 8000)
            try:
                os.unlink(rec.path)
            except OSError:
                pass
            extra["RECORD_DISCARDED"] = "true"
        else:
            frames = wav_write(rec, seconds)
        channel.vars.update(record_vars(seconds, frames, 2 if rec.stereo else 1, cause))
        channel.vars.update(extra)
        if emit:
            self.emit(self.on_demand("RECORD_STOP", channel, {"path": rec.path, "cause": cause}))
            if bug_stop:
                self.emit(self.on_demand("MEDIA_BUG_STOP", channel, {}))

    def move_recordings(self, src: Channel, dst: Channel) -> None:
        """recording_follow_transfer: the media bug moves to the other leg, no RECORD_* events."""
        for rec in list(src.recordings):
            src.recordings.remove(rec)
            rec.channel = dst
            dst.recordings.append(rec)
            self.emit(self.on_demand("MEDIA_BUG_START", dst, {}))
            self.emit(self.on_demand("MEDIA_BUG_STOP", src, {}))

    # ---- api -----------------------------------------------------------------------------------------------
    def api(self, line: str, log_event: bool = True):
        """Run an api command: returns (body, follow-up) — the follow-up emits events after the reply."""
        self.api_log.append((time.time(), line))
        if log_event:
            cmd, _, arg = line.partition(" ")
            self.emit(self.on_demand("API", None, {"command": cmd, "argument": arg}, drop_empty=("argument",)))
        return api_commands.run(self, line)

    def uptime_text(self) -> str:
        up = time.time() - self.started_wall
        secs, ms = int(up), int((up % 1) * 1000)
        live = len(self.channels)
        return (
            f"UP 0 years, 0 days, {secs // 3600} hours, {secs // 60 % 60} minutes, {secs % 60} seconds, "
            f"{ms} milliseconds, {random.randint(0, 999)} microseconds\n"
            "FreeSWITCH (Version 1.10.12-release  64bit) is ready\n"
            f"{self.sessions_since_start} session(s) since startup\n"
            f"{live} session(s) - peak {max(live, 2)}, last 5min {live} \n"
            f"0 session(s) per Sec out of max 30, peak 2, last 5min 2 \n"
            "100 session(s) max\nmin idle cpu 0.00/98.90\nCurrent Stack Size/Max 240K/8192K\n"
        )
