"""The call state machine, without I/O: FreeSWITCH events in, decisions out.

One conversation is keyed on its A leg's `Unique-ID` (equal to the A leg's
`Channel-Call-UUID`); a B leg names its A leg in `Channel-Call-UUID` / `Other-Leg-Unique-ID`.
The office's direction comes from which side is a line of the plan, never from FreeSWITCH's
`Call-Direction` (a staff phone dialling out is an *inbound* A leg to FreeSWITCH).

Facts from the captures (../shared/esl-captures/README.md) that shape this module:
- the B leg answers before the A leg; recording starts on the A leg's CHANNEL_ANSWER;
- a blind transfer of the A leg keeps its recording (a second CHANNEL_BRIDGE, new line);
- with recording_follow_transfer the recording moves to the B leg (MEDIA_BUG_START on B,
  `Media-Bug-Target` = our file) and RECORD_STOP later arrives under B's UUID: recordings
  are matched by their file path;
- RECORD_STOP comes before the recorded leg's CHANNEL_HANGUP_COMPLETE;
- a restart (SHUTDOWN, then disconnect) ends every call.

Every value that could reach an ESL command or a file path is checked here: UUIDs against a
strict pattern, extensions digits only. An event with a bad value is rejected whole.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from yangyang_rec.esl.frames import Event
from yangyang_rec.lines import Line, Plan

UUID_RE = re.compile(r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
EXTENSION_RE = re.compile(r"\A[0-9]{1,16}\Z")
# A notice file goes on the uuid_broadcast command line: no blanks, no control characters.
SAFE_FILE_RE = re.compile(r"\A[^\s\x00-\x1f\x7f]{1,1024}\Z")
KST = dt.timezone(dt.timedelta(hours=9), "KST")
WAV_HEADER_BYTES = 44
STORED_TEXT_MAX = 128
REMEMBERED_CALLS = 50_000
ANSWERED_CALLSTATES = frozenset({"ACTIVE", "HELD", "UNHELD"})

# Only these events drive the machine (the connection subscribes to exactly these).
EVENTS = (
    "CHANNEL_ANSWER",
    "CHANNEL_BRIDGE",
    "CHANNEL_HANGUP_COMPLETE",
    "RECORD_START",
    "RECORD_STOP",
    "MEDIA_BUG_START",
    "SHUTDOWN",
)


def valid_uuid(value: str) -> bool:
    return bool(UUID_RE.match(value))


def valid_extension(value: str) -> bool:
    return bool(EXTENSION_RE.match(value))


def stored_text(value: str) -> str:
    """A channel value as it may be stored in the index: printable, bounded."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in value)
    return cleaned[:STORED_TEXT_MAX]


def recording_path(spool: str, answered_at: dt.datetime, call_uuid: str) -> str:
    """`<spool>/<YYYY>/<MM>/<DD>/<call uuid>.wav`, KST date; refuses anything that could leave the spool."""
    if not valid_uuid(call_uuid):
        raise ValueError("call uuid is not a UUID")
    root = PurePosixPath(spool)
    if not root.is_absolute() or ".." in root.parts:
        raise ValueError("the spool must be an absolute path without '..'")
    day = answered_at.replace(tzinfo=dt.UTC).astimezone(KST).date()
    path = root / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}" / f"{call_uuid}.wav"
    if path.parent.parent.parent.parent != root or any(
        not p.isascii() for p in path.parts[len(root.parts) :]
    ):
        raise ValueError("recording path escapes the spool")
    return str(path)


def kst_date(at_utc: dt.datetime) -> dt.date:
    return at_utc.replace(tzinfo=dt.UTC).astimezone(KST).date()


# ---------------------------------------------------------------- decisions


@dataclass(frozen=True)
class CallFacts:
    """What the index row of a conversation holds at answer."""

    call_uuid: str
    leg_uuid: str
    line: str
    department: str
    mode: str
    direction: str  # the office's view: inbound | outbound
    caller_number: str
    caller_name: str
    callee_number: str
    answered_at: dt.datetime  # naive UTC
    recorded_on: dt.date  # KST
    recording_path: str
    record_state: str = "recording"  # or partial when started late
    missed_seconds: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class CreateRow:
    facts: CallFacts

    @property
    def call_uuid(self) -> str:
        return self.facts.call_uuid


@dataclass(frozen=True)
class StartRecording:
    call_uuid: str
    leg_uuid: str
    path: str
    stereo: bool = True


@dataclass(frozen=True)
class PlayNotice:
    call_uuid: str
    leg_uuid: str
    file: str
    legs: str  # aleg | bleg | both (uuid_broadcast's words)


@dataclass(frozen=True)
class NoteTransfer:
    """The conversation passed to another line, or its recording moved to another channel."""

    call_uuid: str
    leg_uuid: str
    lines_passed: tuple[str, ...]


@dataclass(frozen=True)
class Finalize:
    """The recording ended: check the file, hash it, give the row its final state."""

    call_uuid: str
    path: str
    ended_at: dt.datetime
    hangup_cause: str
    completion_cause: str  # Record-Completion-Cause; "" when finalized without RECORD_STOP
    discarded: bool = False
    record_ms: int | None = None
    note: str = ""


@dataclass(frozen=True)
class Adopted:
    """A row left in state recording by an earlier run whose call is still up: followed again."""

    call_uuid: str
    leg_uuid: str
    path: str


@dataclass(frozen=True)
class Ignore:
    call_uuid: str
    reason: str


@dataclass(frozen=True)
class Reject:
    """A malformed or hostile event: logged, nothing sent."""

    event_name: str
    reason: str


Decision = CreateRow | StartRecording | PlayNotice | NoteTransfer | Finalize | Adopted | Ignore | Reject


def final_state(
    *, prior_state: str, prior_reason: str, completion_cause: str, discarded: bool, size: int | None
) -> tuple[str, str]:
    """The record state and reason of a finished recording, from what FreeSWITCH said and the file on disk."""
    if prior_state in ("failed", "missed"):
        return prior_state, prior_reason
    if discarded or (completion_cause and not completion_cause.startswith("success")):
        what = f"FreeSWITCH ended the recording with {completion_cause or 'no cause'}"
        return "failed", what + (" and discarded the file" if discarded else "")
    if size is None:
        return "failed", "recording file missing"
    if size == 0:
        return "failed", "recording file is empty (0 bytes)"
    if size <= WAV_HEADER_BYTES:
        return "failed", f"recording file is a header-only WAV ({size} bytes, no audio)"
    if prior_state == "partial":
        return "partial", prior_reason
    return "completed", ""


# ---------------------------------------------------------------- the machine


@dataclass
class Conversation:
    call_uuid: str
    leg_uuid: str  # the channel the recording runs on (moves with recording_follow_transfer)
    path: str
    direction: str
    lines_passed: list[str]
    answered_at: dt.datetime
    failed: bool = False


@dataclass(frozen=True)
class Classified:
    line: Line
    direction: str


class _Bounded:
    """Remembers the most recent keys (duplicates re-sent after a reconnect), forgets the oldest."""

    def __init__(self, size: int = REMEMBERED_CALLS) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._keys


def classify(plan: Plan, caller: str, destination: str) -> Classified | str:
    """The line and the office's direction of a conversation, or why it is not one of ours."""
    caller_line = plan.line(caller) if valid_extension(caller) else None
    dest_line = plan.line(destination) if valid_extension(destination) else None
    if caller_line and dest_line:
        return "internal call between two lines, not recorded"
    if dest_line:
        return Classified(dest_line, "inbound")
    if caller_line:
        return Classified(caller_line, "outbound")
    return "no line of the plan is involved"


def notice_legs(notice_leg: str, direction: str) -> str:
    """Map the plan's citizen/staff/both to uuid_broadcast's aleg/bleg/both for this direction."""
    if notice_leg == "both":
        return "both"
    citizen_is_a = direction == "inbound"  # inbound: the citizen dialled in and is the A leg
    if notice_leg == "citizen":
        return "aleg" if citizen_is_a else "bleg"
    return "bleg" if citizen_is_a else "aleg"


def event_time(event: Event, now: dt.datetime) -> dt.datetime:
    """The event's own time (naive UTC) when it is plausible, else `now`."""
    raw = event.get("Event-Date-Timestamp")
    if raw.isdigit() and len(raw) <= 20:
        at = dt.datetime.fromtimestamp(int(raw) / 1_000_000, dt.UTC).replace(tzinfo=None)
        if abs((at - now).total_seconds()) < 86_400:
            return at
    return now


class CallMachine:
    """Decides, event by event, what to record. Holds no sockets, files or clocks."""

    def __init__(self, plan: Plan, spool: str) -> None:
        self.plan = plan  # replaced on reload; applies to new calls only
        self.spool = spool
        self.accepting = True
        self.open: dict[str, Conversation] = {}
        self._by_leg: dict[str, str] = {}
        self._by_path: dict[str, str] = {}
        self._decided = _Bounded()  # A legs whose answer was handled (recorded or not)
        self._ended = _Bounded()  # conversations finalized
        self._gone_legs = _Bounded()
        self._shutting_down = False

    # -- entry points

    def feed(self, event: Event, now: dt.datetime) -> list[Decision]:
        name = event.name
        if name == "SHUTDOWN":
            self._shutting_down = True
            return [Ignore("", "FreeSWITCH is shutting down; open calls end with it")]
        handler = {
            "CHANNEL_ANSWER": self._on_answer,
            "CHANNEL_BRIDGE": self._on_bridge,
            "CHANNEL_HANGUP_COMPLETE": self._on_hangup_complete,
            "RECORD_START": self._on_record_start,
            "RECORD_STOP": self._on_record_stop,
            "MEDIA_BUG_START": self._on_media_bug_start,
        }.get(name)
        if handler is None:
            return []
        uid = event.get("Unique-ID")
        if not valid_uuid(uid):
            return [Reject(name, "Unique-ID is not a UUID")]
        for key in ("Channel-Call-UUID", "Other-Leg-Unique-ID"):
            value = event.get(key)
            if value and not valid_uuid(value):
                return [Reject(name, f"{key} is not a UUID")]
        return handler(event, uid, now)

    def stop_taking_calls(self) -> None:
        self.accepting = False

    def recording_failed(self, call_uuid: str) -> None:
        """The adapter got -ERR for uuid_record: no RECORD_STOP will come, finalize at hangup."""
        conv = self.open.get(call_uuid)
        if conv:
            conv.failed = True

    def connection_lost(self, now: dt.datetime) -> list[Decision]:
        """After SHUTDOWN every call has ended; otherwise wait for `reconcile` after the reconnect."""
        if not self._shutting_down:
            return []
        self._shutting_down = False
        return [
            self._finalize(c, now, "SYSTEM_SHUTDOWN", "", note="FreeSWITCH shut down")
            for c in list(self.open.values())
        ]

    def reconcile(
        self,
        channels: Iterable[dict],
        now: dt.datetime,
        recording_rows: Iterable[Adopted] = (),
        has_row: Callable[[str], bool] = lambda _uuid: False,
        candidates: set[str] | None = None,
    ) -> list[Decision]:
        """After a (re)connect: `show channels as json` rows against what is open or indexed.

        - open conversations whose recorded channel is gone: finalized from the file;
        - `recording_rows` (rows an earlier run left in state recording): followed again when
          their channel lives, else finalized;
        - answered A legs on full lines with no row: recorded from now on, state partial.
        `candidates`: the calls open when `show channels` was sent; a call answered while the
        reply was on its way is not in the list, yet alive.
        """
        self._shutting_down = False
        rows = [r for r in channels if isinstance(r, dict)]
        live = {str(r.get("uuid", "")) for r in rows}
        decisions: list[Decision] = []
        for conv in list(self.open.values()):
            if conv.leg_uuid not in live and (candidates is None or conv.call_uuid in candidates):
                decisions.append(
                    self._finalize(conv, now, "", "", note="call ended while the event socket was down")
                )
        for row in recording_rows:
            if row.call_uuid in self.open or not valid_uuid(row.call_uuid):
                continue
            conv = Conversation(row.call_uuid, row.leg_uuid, row.path, "", [], now)
            if row.leg_uuid in live:
                self._register(conv)
                self._decided.add(row.call_uuid)
                decisions.append(row)
            else:
                decisions.append(
                    self._finalize(conv, now, "", "", note="call ended while the daemon was not running")
                )
        for row in rows:
            decisions.extend(self._reconcile_channel(row, now, has_row))
        return decisions

    # -- event handlers

    def _on_answer(self, event: Event, uid: str, now: dt.datetime) -> list[Decision]:
        a_leg = a_leg_of(event, uid)
        if a_leg != uid:
            conv = self.open.get(a_leg)
            if conv:  # a new staff leg of a recorded call (blind transfer of the A leg)
                return self._note_line(conv, event.get("Caller-Destination-Number"))
            return [Ignore(a_leg, "staff leg answered; the call is recorded from its A leg")]
        if uid in self.open or uid in self._decided or uid in self._ended:
            return [Ignore(uid, "duplicate CHANNEL_ANSWER")]
        if not self.accepting:
            return [Ignore(uid, "stopping: no new calls are taken")]
        self._decided.add(uid)
        return self._begin(
            uid,
            uid,
            caller=event.get("Caller-Caller-ID-Number"),
            caller_name=event.get("Caller-Caller-ID-Name"),
            destination=event.get("Caller-Destination-Number"),
            answered_at=event_time(event, now),
        )

    def _on_bridge(self, event: Event, uid: str, now: dt.datetime) -> list[Decision]:
        call = self._by_leg.get(uid)
        if not call:
            return []
        return self._note_line(self.open[call], event.get("Caller-Destination-Number"))

    def _on_media_bug_start(self, event: Event, uid: str, now: dt.datetime) -> list[Decision]:
        if event.get("Media-Bug-Function") != "session_record":
            return []
        call = self._by_path.get(event.get("Media-Bug-Target"))
        if not call:
            return []
        conv = self.open[call]
        if conv.leg_uuid == uid:
            return []
        self._move(conv, uid)
        return [NoteTransfer(call, uid, tuple(conv.lines_passed))]

    def _on_record_start(self, event: Event, uid: str, now: dt.datetime) -> list[Decision]:
        return []

    def _on_record_stop(self, event: Event, uid: str, now: dt.datetime) -> list[Decision]:
        call = self._by_path.get(event.get("Record-File-Path"))
        if not call:
            return [Ignore("", "RECORD_STOP of a recording this daemon did not start")]
        record_ms = event.get("variable_record_ms")
        return [
            self._finalize(
                self.open[call],
                event_time(event, now),
                stored_text(event.get("Hangup-Cause")),
                stored_text(event.get("Record-Completion-Cause")),
                discarded=event.get("variable_RECORD_DISCARDED") == "true",
                record_ms=int(record_ms) if record_ms.isdigit() and len(record_ms) < 12 else None,
            )
        ]

    def _on_hangup_complete(self, event: Event, uid: str, now: dt.datetime) -> list[Decision]:
        self._gone_legs.add(uid)
        call = self._by_leg.get(uid)
        if not call:
            return []
        conv = self.open[call]
        other = event.get("Other-Leg-Unique-ID")
        if (
            not conv.failed
            and event.get("variable_recording_follow_transfer") == "true"
            and other
            and other not in self._gone_legs
        ):
            # The recording follows a -bleg transfer; its MEDIA_BUG_START was missed.
            self._move(conv, other)
            return [NoteTransfer(call, other, tuple(conv.lines_passed))]
        note = "" if conv.failed else "channel hung up without RECORD_STOP"
        return [
            self._finalize(
                conv, event_time(event, now), stored_text(event.get("Hangup-Cause")), "", note=note
            )
        ]

    # -- helpers

    def _begin(
        self,
        call_uuid: str,
        leg_uuid: str,
        *,
        caller: str,
        caller_name: str,
        destination: str,
        answered_at: dt.datetime,
        late_by: float | None = None,
    ) -> list[Decision]:
        found = classify(self.plan, caller, destination)
        if isinstance(found, str):
            return [Ignore(call_uuid, found)]
        line, direction = found.line, found.direction
        if not valid_extension(line.extension):
            return [Reject("CHANNEL_ANSWER", "line extension is not digits")]
        if not line.records(direction):
            return [
                Ignore(call_uuid, f"line {line.extension} is mode {line.mode}, direction {line.direction}")
            ]
        try:
            path = recording_path(self.spool, answered_at, call_uuid)
        except ValueError as exc:
            return [Reject("CHANNEL_ANSWER", str(exc))]
        state, reason = "recording", ""
        if late_by is not None:
            state, reason = (
                "partial",
                f"answered while the event socket was down; recording began {late_by:.0f} s late",
            )
        facts = CallFacts(
            call_uuid=call_uuid,
            leg_uuid=leg_uuid,
            line=line.extension,
            department=line.department,
            mode=line.mode,
            direction=direction,
            caller_number=stored_text(caller),
            caller_name=stored_text(caller_name),
            callee_number=stored_text(destination),
            answered_at=answered_at,
            recorded_on=kst_date(answered_at),
            recording_path=path,
            record_state=state,
            missed_seconds=late_by or 0.0,
            reason=reason,
        )
        conv = Conversation(call_uuid, leg_uuid, path, direction, [line.extension], answered_at)
        self._register(conv)
        decisions: list[Decision] = [CreateRow(facts), StartRecording(call_uuid, leg_uuid, path)]
        if SAFE_FILE_RE.match(line.announcement) and ".." not in PurePosixPath(line.announcement).parts:
            decisions.append(
                PlayNotice(call_uuid, leg_uuid, line.announcement, notice_legs(line.notice_leg, direction))
            )
        else:
            decisions.append(
                Reject("CHANNEL_ANSWER", f"announcement of line {line.extension} has blanks or '..'")
            )
        return decisions

    def _reconcile_channel(
        self, row: dict, now: dt.datetime, has_row: Callable[[str], bool]
    ) -> list[Decision]:
        uid = str(row.get("uuid", ""))
        call_uuid = str(row.get("call_uuid") or uid)
        if not valid_uuid(uid) or not valid_uuid(call_uuid):
            return [Reject("show channels", "channel uuid is not a UUID")]
        if call_uuid != uid or str(row.get("callstate", "")) not in ANSWERED_CALLSTATES:
            return []
        if uid in self.open or uid in self._by_leg or uid in self._decided or uid in self._ended:
            return []
        self._decided.add(uid)
        if has_row(uid) or not self.accepting:
            return []
        created = str(row.get("created_epoch", ""))
        late_by = 0.0
        if created.isdigit() and len(created) < 12:
            late_by = max(
                0.0,
                (now - dt.datetime.fromtimestamp(int(created), dt.UTC).replace(tzinfo=None)).total_seconds(),
            )
        return self._begin(
            uid,
            uid,
            caller=str(row.get("cid_num", "")),
            caller_name=str(row.get("cid_name", "")),
            destination=str(row.get("dest", "")),
            answered_at=now,
            late_by=late_by,
        )

    def _note_line(self, conv: Conversation, destination: str) -> list[Decision]:
        if conv.direction != "inbound" or not valid_extension(destination) or not self.plan.line(destination):
            return []
        if conv.lines_passed and conv.lines_passed[-1] == destination:
            return []
        conv.lines_passed.append(destination)
        return [NoteTransfer(conv.call_uuid, conv.leg_uuid, tuple(conv.lines_passed))]

    def _register(self, conv: Conversation) -> None:
        self.open[conv.call_uuid] = conv
        self._by_leg[conv.leg_uuid] = conv.call_uuid
        if conv.path:
            self._by_path[conv.path] = conv.call_uuid

    def _move(self, conv: Conversation, leg_uuid: str) -> None:
        self._by_leg.pop(conv.leg_uuid, None)
        conv.leg_uuid = leg_uuid
        self._by_leg[leg_uuid] = conv.call_uuid

    def _finalize(
        self,
        conv: Conversation,
        ended_at: dt.datetime,
        hangup_cause: str,
        completion_cause: str,
        *,
        discarded: bool = False,
        record_ms: int | None = None,
        note: str = "",
    ) -> Finalize:
        self.open.pop(conv.call_uuid, None)
        self._by_leg.pop(conv.leg_uuid, None)
        self._by_path.pop(conv.path, None)
        self._ended.add(conv.call_uuid)
        return Finalize(
            conv.call_uuid, conv.path, ended_at, hangup_cause, completion_cause, discarded, record_ms, note
        )


def a_leg_of(event: Event, uid: str) -> str:
    """The A leg (conversation key) of the channel that sent `event`.

    A B leg names its A leg in Channel-Call-UUID while it lives, and in Other-Leg-Unique-ID with
    Other-Type `originator`; an A leg's Channel-Call-UUID is its own Unique-ID.
    """
    other = event.get("Other-Leg-Unique-ID")
    if event.get("Other-Type") == "originator" and other:
        return other
    call = event.get("Channel-Call-UUID")
    if call and call != uid:
        return call
    return uid
