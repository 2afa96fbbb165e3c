"""config/lines.yaml: the county's recording plan — load, validate, look up a line.

Pure: takes text, returns a `Plan` or raises `LinesError` listing every problem.
(The loader itself is being written; the data classes below are the contract.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

MODES = ("full", "on_demand", "off")
DIRECTIONS = ("inbound", "outbound", "both")
NOTICE_LEGS = ("citizen", "staff", "both")


class LinesError(ValueError):
    """The file is refused as a whole; `problems` holds every `PATH:LINE: message`."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Line:
    extension: str
    department: str  # department id
    department_name: str
    mode: str  # full | on_demand | off
    direction: str  # inbound | outbound | both (the office's view)
    announcement: str  # audio file played as the notice
    notice_leg: str  # citizen | staff | both
    name: str = ""  # desk or person, for people reading the plan

    def records(self, office_direction: str) -> bool:
        """Is a call in this office direction (inbound/outbound) recorded in full from answer?"""
        return self.mode == "full" and self.direction in (office_direction, "both")


@dataclass(frozen=True)
class Department:
    id: str
    name: str
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class Plan:
    departments: tuple[Department, ...]
    by_extension: Mapping[str, Line]
    warnings: tuple[str, ...] = field(default=())

    def line(self, extension: str) -> Line | None:
        return self.by_extension.get(extension)
