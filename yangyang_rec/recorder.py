"""The recorder daemon: events -> call machine decisions -> ESL commands and index writes.

greenswitch hands events over one at a time; the pure `CallMachine` decides in microseconds,
and each conversation's work (commands, index rows, hashing) runs on that call's own greenlet
from a queue: a slow call never delays another, and one call's steps stay in order.

On answer of an in-scope call on a full line: index row (state recording), RECORD_STEREO,
`uuid_record ... start` FIRST, then `uuid_broadcast` of the notice (the recording proves the
caller heard it). At RECORD_STOP / hangup the row gets its final state from the file on disk.
After every (re)connect, `show channels as json` reconciles; at start-up spool files with no
row are indexed as orphans.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import gevent
import gevent.event
import gevent.queue
import structlog
from peewee import IntegrityError

from yangyang_rec import calls
from yangyang_rec.calls import (
    Adopted,
    CallMachine,
    CreateRow,
    Finalize,
    Ignore,
    NoteTransfer,
    PlayNotice,
    Reject,
    StartRecording,
    final_state,
    valid_uuid,
)
from yangyang_rec.esl.connection import EslError, EslSupervisor
from yangyang_rec.index import Call, insert_call, select_call, update_call, utcnow
from yangyang_rec.lines import LinesError, Plan, load_plan
from yangyang_rec.notice import NoticeError, check_notice
from yangyang_rec.settings import Settings

log = structlog.get_logger(__name__)

STOP_GRACE_S = 3.0
PLAN_POLL_S = 1.0
HASH_CHUNK = 1024 * 1024
ORPHAN_REASON = "orphan file: found in the spool with no index row"
CHANNEL_GONE = "Cannot locate session"  # uuid_record's answer when the channel has already hung up


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


def _peek(queue: gevent.queue.Queue):
    try:
        return queue.peek_nowait()
    except gevent.queue.Empty:
        return None


def inside(root: Path, path: str) -> bool:
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, os.path.realpath(path)]) == real_root


SPOOL_FOLDER_MODE = 0o2770


def make_day_folder(spool: Path, folder: Path) -> None:
    """Create <spool>/YYYY/MM/DD as the daemon, mode 2770 whatever the umask.

    The daemon owns the folders, so it can delete what it has shipped; FreeSWITCH writes into them
    as a member of the spool's group (setgid keeps that group). If FreeSWITCH made them itself, they
    would carry its owner and mode instead.
    """
    missing = []
    while folder != spool and not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        os.chmod(path, SPOOL_FOLDER_MODE)


class Recorder:
    """Runs until `stop` is set: the ESL supervisor, one greenlet per call, the plan watcher, services."""

    def __init__(
        self,
        settings: Settings,
        plan: Plan,
        services: list[Callable[[gevent.event.Event], None]] | None = None,
        plan_path: Path | None = None,
        on_ready_to_ship: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.spool = Path(os.path.abspath(settings.spool_dir))
        self.spool.mkdir(parents=True, exist_ok=True)
        self.plan_path = Path(plan_path or settings.lines_file)
        self.machine = CallMachine(plan, str(self.spool))
        # Long-running services started beside the recorder, e.g. the shipper:
        #   Recorder(settings, plan, services=[Shipper(settings).run_forever])
        self.services = list(services or [])
        # Told when a finished recording is queued for upload (the shipper's wake-up).
        self.on_ready_to_ship = on_ready_to_ship
        self.stop_event = gevent.event.Event()
        self.reload_requested = gevent.event.Event()
        self.counts: Counter[str] = Counter()
        self._workers: dict[str, tuple[gevent.queue.Queue, gevent.Greenlet]] = {}
        self._skip: set[str] = set()  # calls indexed by an earlier run: send and write nothing for them
        self._playable_notices: set[tuple[str, int, int]] = set()  # (file, mtime, size) that passed the check
        self._not_recording: set[str] = set()  # uuid_record refused: no notice either
        self._first_connect = True
        self.esl = EslSupervisor(
            settings.esl_host,
            settings.esl_port,
            settings.esl_password,
            calls.EVENTS,
            on_event=self.on_event,
            on_connected=self.on_connected,
            on_lost=self.on_lost,
            command_timeout=settings.esl_command_timeout,
        )

    # -- lifecycle

    def install_signal_handlers(self) -> None:
        """Tiny handlers: they only set events; the loops act on them."""
        gevent.signal_handler(signal.SIGHUP, self.reload_requested.set)
        gevent.signal_handler(signal.SIGTERM, self.stop_event.set)
        gevent.signal_handler(signal.SIGINT, self.stop_event.set)

    def run(self) -> None:
        log.info(
            "recorder.starting",
            spool=str(self.spool),
            node=self.settings.node,
            lines=self.machine.plan.summary(),
        )
        greenlets = [gevent.spawn(self.esl.run, self.stop_event), gevent.spawn(self._watch_plan)]
        greenlets += [gevent.spawn(service, self.stop_event) for service in self.services]
        self.stop_event.wait()
        self.machine.stop_taking_calls()
        log.info("recorder.stopping", open_calls=len(self.machine.open), workers=len(self._workers))
        workers = [g for _q, g in self._workers.values()]
        gevent.joinall(greenlets + workers, timeout=STOP_GRACE_S)
        gevent.killall([g for g in greenlets + workers if not g.dead], timeout=0.5)
        log.info("recorder.stopped", **{f"{k}_count": v for k, v in self.counts.items()})

    def stop(self) -> None:
        self.stop_event.set()

    # -- plan reload

    def _watch_plan(self) -> None:
        last = self._plan_stamp()
        while not self.stop_event.is_set():
            self.reload_requested.wait(PLAN_POLL_S)
            stamp = self._plan_stamp()
            if self.reload_requested.is_set() or stamp != last:
                self.reload_requested.clear()
                last = stamp
                self.reload_plan()

    def _plan_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.plan_path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def reload_plan(self) -> bool:
        """Load lines.yaml for new calls; an invalid file is refused and the last good plan stays."""
        try:
            plan = load_plan(self.plan_path)
        except LinesError as exc:
            for problem in exc.problems:
                log.error("plan.invalid", problem=problem)
            log.warning("plan.kept_last_good", file=str(self.plan_path), lines=self.machine.plan.summary())
            self.counts["plan_refused"] += 1
            return False
        self.machine.plan = plan
        for warning in plan.warnings:
            log.warning("plan.warning", problem=warning)
        log.info("plan.reloaded", file=str(self.plan_path), lines=plan.summary())
        self.counts["plan_reloaded"] += 1
        return True

    # -- events and decisions (run on greenswitch's handler greenlet: must not block)

    def on_event(self, event) -> None:
        self.apply(self.machine.feed(event, utcnow()))

    def on_lost(self, reason: str) -> None:
        self.apply(self.machine.connection_lost(utcnow()))

    def apply(self, decisions: list) -> None:
        for d in decisions:
            if isinstance(d, Reject):
                self.counts["event_rejected"] += 1
                log.warning("event.rejected", event_name=d.event_name, reason=d.reason)
            elif isinstance(d, Ignore):
                log.debug("call.ignored", call=d.call_uuid, reason=d.reason)
            elif isinstance(d, Adopted):
                log.info("call.adopted", call=d.call_uuid, leg=d.leg_uuid)
            else:
                self._queue_for(d.call_uuid).put(d)

    def _queue_for(self, call_uuid: str) -> gevent.queue.Queue:
        entry = self._workers.get(call_uuid)
        if entry is None:
            queue: gevent.queue.Queue = gevent.queue.Queue()
            greenlet = gevent.spawn(self._work, call_uuid, queue)
            entry = self._workers[call_uuid] = (queue, greenlet)
        return entry[0]

    def _work(self, call_uuid: str, queue: gevent.queue.Queue) -> None:
        try:
            while True:
                decision = queue.get()
                if isinstance(decision, StartRecording) and isinstance(_peek(queue), PlayNotice):
                    decision = (decision, queue.get())  # sent together: one round trip, record first
                try:
                    self._do(decision)
                except Exception:
                    self.counts["call_work_failed"] += 1
                    log.exception("call.work_failed", call=call_uuid, step=type(decision).__name__)
                if isinstance(decision, Finalize) and queue.empty():
                    return
        finally:
            entry = self._workers.get(call_uuid)
            if entry and entry[0] is queue:
                del self._workers[call_uuid]
            self._skip.discard(call_uuid)
            self._not_recording.discard(call_uuid)

    # -- the steps of one call (on its own greenlet)

    def _do(self, d) -> None:
        if isinstance(d, tuple):
            if d[0].call_uuid not in self._skip:
                self._start_recording(*d)
        elif isinstance(d, CreateRow):
            self._create_row(d)
        elif d.call_uuid in self._skip:
            return
        elif isinstance(d, StartRecording):
            self._start_recording(d)
        elif isinstance(d, PlayNotice):
            if d.call_uuid not in self._not_recording:
                self._play_notice(d)
        elif isinstance(d, NoteTransfer):
            update_call(d.call_uuid, leg_uuid=d.leg_uuid, lines_passed=",".join(d.lines_passed))
            log.info("call.transferred", call=d.call_uuid, leg=d.leg_uuid, lines=",".join(d.lines_passed))
        elif isinstance(d, Finalize):
            self._finalize(d)

    def _create_row(self, d: CreateRow) -> None:
        f = d.facts
        try:
            insert_call(
                call_uuid=f.call_uuid,
                leg_uuid=f.leg_uuid,
                node=self.settings.node,
                line=f.line,
                lines_passed=f.line,
                department=f.department,
                mode=f.mode,
                direction=f.direction,
                caller_number=f.caller_number,
                caller_name=f.caller_name,
                callee_number=f.callee_number,
                answered_at=f.answered_at,
                recorded_on=f.recorded_on,
                recording_path=f.recording_path,
                record_state=f.record_state,
                record_reason=f.reason,
                missed_seconds=f.missed_seconds,
                upload_state="pending",
            )
        except IntegrityError:
            # Already indexed (an earlier run): never a second recording or row.
            self._skip.add(f.call_uuid)
            self.machine.recording_failed(f.call_uuid)
            log.warning("call.already_indexed", call=f.call_uuid)
            return
        log.info(
            "call.answered",
            call=f.call_uuid,
            line=f.line,
            direction=f.direction,
            caller=f.caller_number,
            state=f.record_state,
        )

    def _fail(self, call_uuid: str, reason: str, counter: str, state: str = "failed") -> None:
        self.counts[counter] += 1
        update_call(call_uuid, record_state=state, record_reason=reason)
        log.warning("recording." + state, call=call_uuid, reason=reason)

    def _start_recording(self, d: StartRecording, notice: PlayNotice | None = None) -> None:
        """RECORD_STEREO, then uuid_record, then (if given) uuid_broadcast, in one write.

        FreeSWITCH runs the api commands of one socket in order, so the recording has started
        before the notice plays, and a short call is not lost to round trips.
        """
        if not inside(self.spool, d.path) or os.path.lexists(d.path):
            self._not_recording.add(d.call_uuid)
            self.machine.recording_failed(d.call_uuid)
            self._fail(d.call_uuid, "recording path exists already or leaves the spool", "record_refused")
            return
        make_day_folder(self.spool, Path(d.path).parent)
        if notice is not None and not self._notice_playable(notice):
            notice = None
        commands = [
            # A -bleg transfer (or SIP REFER) then moves the recording instead of ending it.
            f"uuid_setvar {d.leg_uuid} recording_follow_transfer true",
            f"uuid_record {d.leg_uuid} start {d.path}",
        ]
        if d.stereo:  # read when the recording starts, so set first
            commands.insert(0, f"uuid_setvar {d.leg_uuid} RECORD_STEREO true")
        if notice is not None:
            commands.append(self._broadcast_command(notice))
        try:
            replies = self.esl.api_batch(commands)
        except EslError as exc:
            self._not_recording.add(d.call_uuid)
            self.machine.recording_failed(d.call_uuid)
            self._fail(d.call_uuid, f"uuid_record not confirmed: {exc}", "record_error")
            return
        record = replies[-2] if notice is not None else replies[-1]
        if not record.ok:
            self._not_recording.add(d.call_uuid)
            self.machine.recording_failed(d.call_uuid)
            if CHANNEL_GONE in record.text:
                self._fail(d.call_uuid, "the call ended before the recording could start", "record_missed", "missed")
            else:
                self._fail(d.call_uuid, f"uuid_record: {record.text.strip()[:200]}", "record_error")
            return
        self.counts["recording_started"] += 1
        log.info("recording.started", call=d.call_uuid, leg=d.leg_uuid)
        if notice is not None:
            self._notice_result(notice, replies[-1])

    @staticmethod
    def _broadcast_command(d: PlayNotice) -> str:
        return f"uuid_broadcast {d.leg_uuid} {d.file} {d.legs}"

    def _notice_playable(self, d: PlayNotice) -> bool:
        """FreeSWITCH answers +OK to uuid_broadcast of a missing file and plays silence, so look first.

        The call is still recorded (evidence is kept), but the row says the notice was not played.
        """
        try:
            stat = os.stat(d.file)
            key = (d.file, stat.st_mtime_ns, stat.st_size)
            if key not in self._playable_notices:
                check_notice(Path(d.file))
                self._playable_notices.add(key)
            return True
        except (OSError, NoticeError) as exc:
            self.counts["notice_unplayable"] += 1
            log.error("notice.unplayable", call=d.call_uuid, file=d.file, problem=str(exc))
            return False

    def _play_notice(self, d: PlayNotice) -> None:
        if not self._notice_playable(d):
            return
        try:
            reply = self.esl.api(self._broadcast_command(d))
        except EslError as exc:
            self._fail(d.call_uuid, f"notice not confirmed: {exc}", "notice_error")
            return
        self._notice_result(d, reply)

    def _notice_result(self, d: PlayNotice, reply) -> None:
        if not reply.ok:
            self._fail(d.call_uuid, f"uuid_broadcast: {reply.text.strip()[:200]}", "notice_error")
            return
        update_call(d.call_uuid, notice_played=True)
        log.info("notice.played", call=d.call_uuid, legs=d.legs)

    def _finalize(self, d: Finalize) -> None:
        row = select_call(d.call_uuid, "recording_path", "record_state", "record_reason", "answered_at", "hangup_cause")
        if row is None:
            log.warning("call.finalize_without_row", call=d.call_uuid)
            return
        path = row["recording_path"] or d.path
        size = file_size(path) if path and inside(self.spool, path) else None
        digest = ""
        if size and size > calls.WAV_HEADER_BYTES:
            digest = gevent.get_hub().threadpool.apply(sha256_file, (path,))
        state, reason = final_state(
            prior_state=row["record_state"],
            prior_reason=row["record_reason"],
            completion_cause=d.completion_cause,
            discarded=d.discarded,
            size=size,
        )
        if d.note and state != "completed":
            reason = f"{reason}; {d.note}" if reason else d.note
        duration = max(0.0, (d.ended_at - row["answered_at"]).total_seconds())
        update_call(
            d.call_uuid,
            ended_at=d.ended_at,
            duration_s=round(duration, 3),
            hangup_cause=d.hangup_cause or row["hangup_cause"],
            bytes=size,
            sha256=digest,
            record_state=state,
            record_reason=reason,
            upload_state="pending" if digest else "none",
        )
        self.counts[f"recording_{state}"] += 1
        if digest and self.on_ready_to_ship is not None:
            self.on_ready_to_ship()
        event = "recording.completed" if state in ("completed", "partial") else "recording.failed"
        log.info(
            event, call=d.call_uuid, state=state, reason=reason, bytes=size, duration_s=round(duration, 1)
        )

    # -- reconnect and start-up reconciliation

    def on_connected(self, esl: EslSupervisor) -> None:
        candidates = set(self.machine.open)
        reply = esl.api("show channels as json")
        try:
            data = json.loads(reply.text) if reply.ok else None
        except json.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            log.warning("reconcile.skipped", reason="show channels gave no JSON")
            return
        channels = data.get("rows") or []
        adopted = [
            Adopted(row.call_uuid, row.leg_uuid, row.recording_path)
            for row in Call.select().where(
                Call.record_state.in_(("recording", "partial")), Call.ended_at.is_null(True)
            )
            if row.call_uuid not in self.machine.open
            and row.call_uuid not in self._workers
            and valid_uuid(row.leg_uuid)
            and row.node == self.settings.node
        ]
        decisions = self.machine.reconcile(
            channels,
            utcnow(),
            recording_rows=adopted,
            has_row=lambda uuid: Call.select().where(Call.call_uuid == uuid).exists(),
            candidates=candidates,
        )
        log.info("reconcile.done", channels=len(channels), decisions=len(decisions))
        self.apply(decisions)
        if self._first_connect:
            self._first_connect = False
            self.index_orphans()

    def index_orphans(self) -> int:
        """Spool files with no index row (e.g. the index was lost) get a row so they are kept and shipped."""
        found = 0
        for path in sorted(self.spool.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/*.wav")):
            stem = path.stem
            if (
                not valid_uuid(stem)
                or path.is_symlink()
                or Call.select().where(Call.call_uuid == stem).exists()
            ):
                continue
            try:
                day = dt.date(int(path.parts[-4]), int(path.parts[-3]), int(path.parts[-2]))
            except ValueError:
                continue
            size = path.stat().st_size
            has_audio = size > calls.WAV_HEADER_BYTES
            digest = gevent.get_hub().threadpool.apply(sha256_file, (str(path),)) if has_audio else ""
            mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(tzinfo=None)
            Call.create(
                call_uuid=stem,
                leg_uuid=stem,
                node=self.settings.node,
                line="",
                department="unknown",
                mode="",
                direction="",
                answered_at=mtime,
                ended_at=mtime,
                recorded_on=day,
                recording_path=str(path),
                bytes=size,
                sha256=digest,
                record_state="partial" if has_audio else "failed",
                record_reason=ORPHAN_REASON,
                upload_state="pending" if has_audio else "none",
            )
            found += 1
            log.warning("recording.orphan", call=stem, bytes=size)
        return found


def run_daemon(
    settings: Settings,
    services: list[Callable[[gevent.event.Event], None]] | None = None,
    on_ready_to_ship: Callable[[], None] | None = None,
) -> int:
    """`yangyang-rec run`: index, plan, notice check, then record until SIGTERM/SIGINT."""
    from yangyang_rec.index import open_index
    from yangyang_rec.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    try:
        plan = load_plan(settings.lines_file)
    except LinesError as exc:
        for problem in exc.problems:
            log.error("plan.invalid", problem=problem)
        log.error(
            "recorder.not_started",
            reason=f"{settings.lines_file} is invalid; fix it (yangyang-rec lines check)",
        )
        return 2
    for warning in plan.warnings:
        log.warning("plan.warning", problem=warning)
    _check_notice(settings.notice_file)
    if settings.esl_password == "ClueCon" or settings.esl_password.upper().startswith("CHANGE-ME"):
        log.warning(
            "esl.default_password",
            advice="the event socket still uses the well-known default password; set yyrec_esl_password "
            "in FreeSWITCH and YYREC_ESL_PASSWORD here (docs/operators.md)",
        )
    open_index(settings.database_url)
    recorder = Recorder(settings, plan, services=services, on_ready_to_ship=on_ready_to_ship)
    recorder.install_signal_handlers()
    recorder.run()
    return 0


def _check_notice(path: Path) -> None:
    """A notice FreeSWITCH cannot play is silent on the line (uuid_broadcast still says +OK): say so loudly."""
    try:
        check_notice(Path(path))
    except (NoticeError, OSError) as exc:
        log.error("notice.unusable", file=str(path), problem=str(exc))
