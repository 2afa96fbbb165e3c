"""Structured logs: one processor chain that masks phone numbers and drops secrets.

Masking happens in the chain, not at call sites, so no later code can leak a caller's
number or a password by forgetting to mask it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping

import structlog

SECRET_KEYS = re.compile(r"(password|secret|passwd|token|credential|authorization|access_key)", re.I)
# A phone number: 7+ digits in a row, or Korean-style groups joined by "-", "." or a space
# (010-1234-5678, 033 670 2101). Not part of a longer word or UUID; dates (2026-12-03) do not match.
PHONE = re.compile(r"(?<![\w-])\+?(?:\d{2,4}[-. ]\d{3,4}[-. ]\d{4}|\d{7,})(?![\w-])")
MIN_PHONE_DIGITS = 7


def mask_phone(text: str) -> str:
    """Keep the first 3 and last 4 digits of every phone number: 0105551234 -> 010***1234."""

    def repl(m: re.Match[str]) -> str:
        found = m.group(0)
        total = sum(ch.isdigit() for ch in found)
        seen, out = 0, []
        for ch in found:
            if ch.isdigit():
                seen += 1
                out.append(ch if seen <= 3 or seen > total - 4 else "*")
            else:
                out.append(ch)
        return "".join(out)

    return PHONE.sub(repl, text)


def _scrub(value: object) -> object:
    if isinstance(value, str):
        return mask_phone(value)
    if isinstance(value, int) and not isinstance(value, bool) and len(str(abs(value))) >= MIN_PHONE_DIGITS:
        return mask_phone(str(value))
    if isinstance(value, Mapping):
        return {k: ("********" if SECRET_KEYS.search(str(k)) else _scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


# Keys whose values are measurements, never phone numbers.
NUMERIC_KEYS = frozenset({"bytes", "size", "duration", "seconds", "ms", "attempt", "count", "port", "pid", "timestamp"})


def mask_personal_data(_logger: object, _method: str, event_dict: dict) -> dict:
    """structlog processor: mask phone numbers in every field, drop secret-looking fields."""
    for key in list(event_dict):
        if SECRET_KEYS.search(key):
            event_dict[key] = "********"
        elif key not in NUMERIC_KEYS and not key.endswith(("_bytes", "_ms", "_s", "_count")):
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def configure_logging(level: str = "info", fmt: str = "auto", stream=None) -> None:
    """Set up structlog once at start-up: JSON lines off a terminal, readable console on one."""
    stream = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer = structlog.dev.ConsoleRenderer(colors=False) if fmt == "console" else structlog.processors.JSONRenderer(
        ensure_ascii=False
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_personal_data,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
