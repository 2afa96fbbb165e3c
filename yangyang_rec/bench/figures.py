"""Bench results: figures with their targets, the printed table and var/bench.json. Pure, no I/O
except `write_json`."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Figure:
    """One measured value. `target` is text like '>= 0.8' or '<= 10'; None means reported only."""

    name: str
    value: float | None
    unit: str
    target: str | None = None
    note: str = ""

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return False
        op, _, bound = self.target.partition(" ")
        limit = float(bound.replace(",", ""))
        if op == ">=":
            return self.value >= limit
        if op == "<=":
            return self.value <= limit
        raise ValueError(f"target {self.target!r} must start with '>=' or '<='")

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["pass"] = self.passed
        if not self.note:
            out.pop("note")
        return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values. Nearest-rank never invents a value."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def machine() -> dict[str, object]:
    return {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
    }


def verdict(figure: Figure) -> str:
    passed = figure.passed
    return "" if passed is None else ("pass" if passed else "short")


def format_value(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if float(value).is_integer() and abs(value) >= 10:
        return f"{value:,.0f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if value else "0"


def table(figures: list[Figure]) -> str:
    rows = [("figure", "value", "unit", "target", ""), *(
        (f.name, format_value(f.value), f.unit, f.target or "", verdict(f)) for f in figures
    )]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join([row[0].ljust(widths[0]), row[1].rjust(widths[1]), *(c.ljust(w) for c, w in zip(row[2:], widths[2:], strict=True))]).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [f"  {f.name}: {f.note}" for f in figures if f.note]
    if notes:
        lines += ["", "notes:", *notes]
    return "\n".join(lines)


def document(figures: list[Figure], extra: dict[str, object] | None = None) -> dict[str, object]:
    doc: dict[str, object] = {"figures": [f.as_dict() for f in figures], "machine": machine()}
    if extra:
        doc.update(extra)
    return doc


def write_json(path: Path, doc: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
