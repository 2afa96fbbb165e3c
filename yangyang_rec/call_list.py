"""`yangyang-rec calls`: recent calls from the index, for people (a table in KST) and scripts (JSON lines)."""

from __future__ import annotations

import datetime as dt
import re

from yangyang_rec.calls import KST
from yangyang_rec.index import Call, utcnow
from yangyang_rec.logs import mask_phone

RELATIVE = re.compile(r"\A(\d+)\s*([mhd])\Z")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}


class SinceError(ValueError):
    pass


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """`30m`, `2h`, `7d`, or a KST date/time `2026-12-03` / `2026-12-03 14:00` -> naive UTC."""
    now = now or utcnow()
    text = text.strip()
    m = RELATIVE.match(text)
    if m:
        return now - dt.timedelta(**{UNITS[m.group(2)]: int(m.group(1))})
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            local = dt.datetime.strptime(text, fmt).replace(tzinfo=KST)
        except ValueError:
            continue
        return local.astimezone(dt.UTC).replace(tzinfo=None)
    raise SinceError(
        f"--since {text!r}: use 30m, 2h, 7d, or a Korea-time date such as 2026-12-03 or '2026-12-03 14:00'"
    )


def recent_calls(since: dt.datetime, line: str | None = None, limit: int = 200) -> list[Call]:
    query = Call.select().where(Call.answered_at >= since)
    if line:
        query = query.where((Call.line == line) | Call.lines_passed.contains(line))
    return list(query.order_by(Call.answered_at.desc()).limit(limit))


def kst_text(at: dt.datetime | None) -> str:
    if at is None:
        return ""
    return at.replace(tzinfo=dt.UTC).astimezone(KST).strftime("%Y-%m-%d %H:%M:%S")


def as_json(row: Call) -> dict:
    return {
        "call_uuid": row.call_uuid,
        "answered_at_kst": kst_text(row.answered_at),
        "line": row.line,
        "lines_passed": [x for x in row.lines_passed.split(",") if x],
        "department": row.department,
        "direction": row.direction,
        "caller": mask_phone(row.caller_number),
        "record_state": row.record_state,
        "record_reason": row.record_reason,
        "upload_state": row.upload_state,
        "duration_s": row.duration_s,
        "sha256": row.sha256,
        "recording_path": row.recording_path,
    }


COLUMNS = ("answered (KST)", "line", "department", "direction", "caller", "duration", "record", "upload")


def table(rows: list[Call]) -> list[str]:
    cells = [
        (
            kst_text(r.answered_at),
            r.line if r.lines_passed in ("", r.line) else r.lines_passed.replace(",", ">"),
            r.department,
            r.direction,
            mask_phone(r.caller_number),
            "" if r.duration_s is None else f"{r.duration_s:.0f}s",
            r.record_state if not r.record_reason else f"{r.record_state} ({r.record_reason[:40]})",
            r.upload_state,
        )
        for r in rows
    ]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(COLUMNS)]
    out = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return out
