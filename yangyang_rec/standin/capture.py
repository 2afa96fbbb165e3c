"""`yangyang-rec capture`: record a real FreeSWITCH's event stream to a transcript, scrubbed.

Phone numbers (runs of 4+ digits that are not times, sizes or UUID parts) and caller names are
replaced before anything is written, so a transcript can be sent to support.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

from yangyang_rec.esl.frames import FrameReader, encode_command
from yangyang_rec.standin.events import OutEvent
from yangyang_rec.standin.templates import plain_header_list

NUMBER = re.compile(r"(?<![\w.-])(0\d{6,11}|\d{3,4})(?![\w.-])")
NAME_HEADERS = ("Caller-Caller-ID-Name", "Caller-Orig-Caller-ID-Name", "Other-Leg-Caller-ID-Name",
                "Other-Leg-Orig-Caller-ID-Name", "variable_sip_from_display", "variable_effective_caller_id_name",
                "variable_caller_id_name")
KEEP_NUMERIC = re.compile(r"(Time|Timestamp|epoch|uepoch|Sequence|sec|msec|usec|port|Port|size|samples|count|"
                          r"bytes|Number$|Rate|ssrc|Line-Number|session_id|pt$|cseq|max_forwards)")


def scrub_number(value: str) -> str:
    return NUMBER.sub(lambda m: m.group(0)[:2] + "X" * (len(m.group(0)) - 2) if len(m.group(0)) > 6 else m.group(0),
                      value)


def scrub_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out = []
    for name, value in headers:
        if name in NAME_HEADERS and value:
            value = "Caller"
        elif "caller_id" in name.lower() or "Caller-" in name or "Other-Leg-" in name or "sip_" in name \
                or "Channel-Name" in name or "channel_name" in name or "Username" in name or "ANI" in name \
                or "Destination" in name or "variable_caller_id" in name:
            value = scrub_number(value)
        elif not KEEP_NUMERIC.search(name):
            value = scrub_number(value)
        out.append((name, value))
    return out


def capture(host: str, port: int, password: str, out: Path, seconds: float | None = None,
            events: str = "ALL") -> int:
    """Connect, subscribe, write every event (scrubbed, plain) to `out`; returns the number written."""
    sock = socket.create_connection((host, port), timeout=10)
    reader = FrameReader()
    frames: list = []

    def next_frame():
        while not frames:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("FreeSWITCH closed the connection")
            frames.extend(reader.feed(data))
        return frames.pop(0)

    if next_frame().content_type != "auth/request":
        raise ConnectionError("this is not a FreeSWITCH event socket (no auth/request greeting)")
    sock.sendall(encode_command(f"auth {password}"))
    if next_frame().headers.get("Reply-Text") != "+OK accepted":
        raise PermissionError("FreeSWITCH refused the event-socket password")
    sock.sendall(encode_command(f"event plain {events}"))
    next_frame()
    deadline = time.time() + seconds if seconds else None
    count = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh:
        while deadline is None or time.time() < deadline:
            sock.settimeout(max(0.1, deadline - time.time()) if deadline else None)
            try:
                frame = next_frame()
            except TimeoutError:
                break
            except ConnectionError:
                break
            if frame.content_type != "text/event-plain":
                continue
            headers, body = plain_header_list(frame.body)
            fh.write(OutEvent("", scrub_headers(headers), scrub_number(body)).plain())
            count += 1
    sock.close()
    return count
