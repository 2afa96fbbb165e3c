"""The event-socket connection supervisor around greenswitch's InboundESL.

greenswitch moves the bytes, with four fixes made in a subclass:
- frames are cut by `esl.frames.FrameReader` and event bodies parsed by `parse_plain_event`
  (values decoded per line: an encoded newline cannot forge a header; invalid UTF-8 is
  replaced, never fatal), where greenswitch decodes whole blocks strictly and loops forever
  on EOF inside a body;
- every command has a timeout; a command that times out breaks the connection, since the
  replies that follow would be matched to the wrong commands;
- commands are written with sendall under a lock, so two call greenlets never interleave;
- events queued before the socket closed are still handled (greenswitch drops them).

The supervisor makes a fresh connection for every attempt (a reused InboundESL can hang),
subscribes to the events the daemon needs, and on any loss retries with capped exponential
backoff and jitter, logging each change of state once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import gevent
import gevent.event
import gevent.lock
import gevent.queue
import gevent.socket
import structlog
from greenswitch.esl import InboundESL, NotConnectedError

from yangyang_rec.esl.frames import (
    EventError,
    Frame,
    FrameError,
    FrameReader,
    encode_command,
    parse_plain_event,
)

log = structlog.get_logger(__name__)

RECV_CHUNK = 65536
STILL_DOWN_EVERY_S = 60.0  # while FreeSWITCH stays unreachable, one warning a minute
_CLOSED = object()


class EslError(Exception):
    """The command could not be completed on the event socket."""


class CommandTimeout(EslError):
    pass


class EslUnavailable(EslError):
    pass


@dataclass
class Reply:
    """A command/reply or api/response: its headers and body text."""

    headers: dict[str, str]
    data: str = ""

    @property
    def text(self) -> str:
        return self.data or self.headers.get("Reply-Text", "")

    @property
    def ok(self) -> bool:
        return not self.text.startswith(("-ERR", "-USAGE"))


@dataclass
class Backoff:
    """Capped exponential backoff with jitter: base, 2*base, 4*base ... up to cap, each times 0.5-1.0."""

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.base * 2 ** max(0, attempt - 1)) * self.rng.uniform(0.5, 1.0)


class EslConnection(InboundESL):
    """One connection attempt. Never reused after it closes."""

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        on_event: Callable,
        command_timeout: float = 5.0,
        connect_timeout: float = 5.0,
    ) -> None:
        super().__init__(host, port, password, timeout=connect_timeout)
        self.on_event = on_event
        self.command_timeout = command_timeout
        self.connect_timeout = connect_timeout
        self.closed = gevent.event.Event()
        self.close_reason = ""
        self.disconnect_notice = ""
        self._send_lock = gevent.lock.Semaphore()
        self._reader = FrameReader()
        self.sock = None

    # -- connect, authenticate, subscribe

    def connect(self) -> None:
        """Connect and authenticate within connect_timeout; raises EslUnavailable."""
        try:
            with gevent.Timeout(
                self.connect_timeout, EslUnavailable("no auth/request from FreeSWITCH in time")
            ):
                self.sock = gevent.socket.create_connection(
                    (self.host, self.port), timeout=self.connect_timeout
                )
                self.sock.settimeout(None)
                self.connected = True
                self.start_event_handlers()
                self._auth_request_event.wait()
                if not self.connected:
                    raise EslUnavailable("FreeSWITCH closed the connection before authentication")
            reply = self.send(f"auth {self.password}")
        except OSError as exc:
            self.close(f"connect failed: {exc.strerror or exc}")
            raise EslUnavailable(
                f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        except (EslError, NotConnectedError) as exc:
            self.close(str(exc) or "connect failed")
            raise EslUnavailable(str(exc) or "connection closed during authentication") from None
        if reply.headers.get("Reply-Text") != "+OK accepted":
            self.close("authentication refused")
            raise EslUnavailable("FreeSWITCH refused the event-socket password (check esl_password)")

    def subscribe(self, events: Iterable[str]) -> None:
        reply = self.send("event plain " + " ".join(events))
        if not reply.ok:
            self.close("subscribe refused")
            raise EslUnavailable(f"FreeSWITCH refused the event subscription: {reply.text}")

    # -- commands

    def send(self, data: str) -> Reply:
        """Send one command, wait at most command_timeout for its reply."""
        return self._exchange([data])[0]

    def api(self, command: str) -> Reply:
        return self.send(f"api {command}")

    def api_batch(self, commands: list[str]) -> list[Reply]:
        """Several api commands in one write; FreeSWITCH runs them in order, replies come in order.

        One round trip instead of one per command: on answer, RECORD_STEREO is set and the
        recording started before a short call can end.
        """
        return self._exchange([f"api {c}" for c in commands])

    def _exchange(self, commands: list[str]) -> list[Reply]:
        if not self.connected or self.closed.is_set():
            raise NotConnectedError()
        # encode_command refuses line breaks: a value can never become a second command.
        raw = b"".join(encode_command(c) for c in commands)
        results = [gevent.event.AsyncResult() for _ in commands]
        with self._send_lock:
            self._commands_sent.extend(results)
            try:
                self.sock.sendall(raw)
            except OSError as exc:
                self.close(f"send failed: {exc}")
                raise NotConnectedError() from None
        try:
            with gevent.Timeout(self.command_timeout):
                return [r.get() for r in results]
        except gevent.Timeout:
            self.close("a command got no reply in time")
            raise CommandTimeout(f"no reply within {self.command_timeout} s") from None

    # -- receiving

    def receive_events(self) -> None:
        reason = "FreeSWITCH closed the connection"
        try:
            while self._run:
                data = self.sock.recv(RECV_CHUNK)
                if not data:
                    break
                for frame in self._reader.feed(data):
                    self.handle_event(frame)
        except FrameError as exc:
            reason = f"bad framing from FreeSWITCH: {exc}"
        except OSError as exc:
            reason = f"socket error: {exc}"
        finally:
            self._finish(reason)

    @staticmethod
    def _read_socket(sock, length):
        """Not used (frames come from FrameReader); kept safe: stops at EOF, never decodes strictly."""
        data = b""
        while len(data) < length:
            chunk = sock.read(length - len(data))
            if not chunk:
                raise EOFError("connection closed inside a frame body")
            data += chunk
        return data.decode("utf-8", errors="replace")

    def handle_event(self, frame: Frame) -> None:
        kind = frame.content_type
        if kind == "auth/request":
            self._auth_request_event.set()
        elif kind in ("command/reply", "api/response"):
            if not self._commands_sent:
                raise FrameError(f"a {kind} arrived with no command waiting")
            self._commands_sent.pop(0).set(Reply(frame.headers, frame.text if kind == "api/response" else ""))
        elif kind == "text/event-plain":
            try:
                event = parse_plain_event(frame.body)
            except EventError as exc:
                log.warning("event.rejected", reason=str(exc), bytes=len(frame.body))
                return
            self._esl_event_queue.put(event)
        elif kind == "text/disconnect-notice":
            self.disconnect_notice = frame.text.strip()[:200]
        elif kind == "text/rude-rejection":
            self.connected = False
            self._auth_request_event.set()

    def process_events(self) -> None:
        """Handle queued events one at a time, in order, until the connection closed and the queue is empty."""
        while True:
            event = self._esl_event_queue.get()
            if event is _CLOSED:
                break
            try:
                self.on_event(event)
            except Exception:
                log.exception("event.handler_failed", event_name=event.name)
        self.closed.set()

    # -- closing

    def _finish(self, reason: str) -> None:
        if not self.close_reason:
            self.close_reason = self.disconnect_notice or reason
        self._run = False
        self.connected = False
        self._auth_request_event.set()
        pending, self._commands_sent = self._commands_sent, []
        for result in pending:
            result.set_exception(NotConnectedError())
        if self.sock is not None:
            self.sock.close()
        if self._process_events_greenlet is None:
            self.closed.set()
        else:
            self._esl_event_queue.put(_CLOSED)

    def close(self, reason: str = "closed by the daemon") -> None:
        """Close without sending anything (recordings keep running in FreeSWITCH)."""
        if not self.close_reason:
            self.close_reason = reason
        if self._receive_events_greenlet is None:
            self._finish(reason)
        elif self.sock is not None:
            try:
                self.sock.shutdown(gevent.socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()


class EslSupervisor:
    """Keeps one live, subscribed connection; calls back on connect, event and loss."""

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        events: Iterable[str],
        on_event: Callable,
        on_connected: Callable[[EslSupervisor], None] = lambda _s: None,
        on_lost: Callable[[str], None] = lambda _r: None,
        command_timeout: float = 5.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.host, self.port, self._password = host, port, password
        self.events = tuple(events)
        self.on_event = on_event
        self.on_connected = on_connected
        self.on_lost = on_lost
        self.command_timeout = command_timeout
        self.backoff = backoff or Backoff()
        self.current: EslConnection | None = None
        self.connected_event = gevent.event.Event()
        self.connections = 0

    def api(self, command: str) -> Reply:
        """Run `api <command>`; raises EslUnavailable when there is no connection."""
        conn = self.current
        if conn is None:
            raise EslUnavailable("not connected to FreeSWITCH")
        try:
            return conn.api(command)
        except NotConnectedError:
            raise EslUnavailable("the event-socket connection was lost") from None

    def api_batch(self, commands: list[str]) -> list[Reply]:
        conn = self.current
        if conn is None:
            raise EslUnavailable("not connected to FreeSWITCH")
        try:
            return conn.api_batch(commands)
        except NotConnectedError:
            raise EslUnavailable("the event-socket connection was lost") from None

    def run(self, stop: gevent.event.Event) -> None:
        failures = 0
        down_since = last_warned = 0.0
        while not stop.is_set():
            conn = EslConnection(
                self.host,
                self.port,
                self._password,
                self.on_event,
                self.command_timeout,
                self.command_timeout,
            )
            try:
                conn.connect()
                conn.subscribe(self.events)
            except EslUnavailable as exc:
                failures += 1
                delay = self.backoff.delay(failures)
                now = time.monotonic()
                if failures == 1:
                    down_since = last_warned = now
                    log.warning("esl.retrying", reason=str(exc), attempt=failures, **{"in": round(delay, 1)})
                elif now - last_warned >= STILL_DOWN_EVERY_S:
                    # Once a minute, not once per attempt: hours of outage stay visible, not noisy.
                    last_warned = now
                    log.warning("esl.still_down", reason=str(exc), attempts=failures, down_s=round(now - down_since))
                else:
                    log.debug("esl.retrying", reason=str(exc), attempt=failures, **{"in": round(delay, 1)})
                stop.wait(delay)
                continue
            failures = 0
            self.connections += 1
            self.current = conn
            self.connected_event.set()
            log.info("esl.connected", host=self.host, port=self.port, events=len(self.events))
            reconcile = gevent.spawn(self._connected, conn)
            stopper = gevent.spawn(self._close_on_stop, conn, stop)
            conn.closed.wait()
            stopper.kill()
            reconcile.join(timeout=1)
            self.current = None
            self.connected_event.clear()
            if stop.is_set():
                log.info("esl.closed")
                break
            log.warning("esl.lost", reason=conn.close_reason)
            try:
                self.on_lost(conn.close_reason)
            except Exception:
                log.exception("esl.on_lost_failed")
            delay = self.backoff.delay(1)
            log.info("esl.retrying", attempt=1, **{"in": round(delay, 1)})
            stop.wait(delay)
            failures = 1

    @staticmethod
    def _close_on_stop(conn: EslConnection, stop: gevent.event.Event) -> None:
        stop.wait()
        conn.close("daemon stopping")

    def _connected(self, conn: EslConnection) -> None:
        try:
            self.on_connected(self)
        except EslError as exc:
            log.warning("esl.reconcile_failed", reason=str(exc))
        except Exception:
            log.exception("esl.reconcile_failed")
