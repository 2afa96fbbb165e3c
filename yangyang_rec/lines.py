"""config/lines.yaml: the county's recording plan — load, validate, look up a line.

`parse_plan` is pure: it takes the text and returns a `Plan`, or raises `LinesError` listing
every problem as `PATH:LINE: message`, so the person editing the file fixes all of them in
one go. The YAML is read with a loader that resolves NO implicit types: every plain scalar
is text, which defeats the YAML 1.1 traps (`0336` as octal, `off`/`no`/`on` as booleans).
We walk the composed nodes ourselves, so every message carries the line it is about.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

MODES = ("full", "on_demand", "off")
DIRECTIONS = ("inbound", "outbound", "both")
NOTICE_LEGS = ("citizen", "staff", "both")

DEFAULT_ANNOUNCEMENT = "freeswitch/sounds/notice-ko.wav"
# Used when neither the line, its department nor `defaults:` says otherwise.
# `mode` has no built-in default: whether a line is recorded is a decision someone must write down.
BUILTIN_DEFAULTS = {"direction": "both", "announcement": DEFAULT_ANNOUNCEMENT, "notice_leg": "citizen"}

SETTING_KEYS = ("mode", "direction", "announcement", "notice_leg")
TOP_KEYS = ("defaults", "departments")
DEPARTMENT_KEYS = ("id", "name", "lines", *SETTING_KEYS)
LINE_KEYS = ("ext", "name", *SETTING_KEYS)
ALLOWED_VALUES = {"mode": MODES, "direction": DIRECTIONS, "notice_leg": NOTICE_LEGS}
# Words people write when they mean something else; the hint makes the fix obvious.
VALUE_HINTS = {
    "mode": {
        "no": "off",
        "false": "off",
        "none": "off",
        "yes": "full",
        "true": "full",
        "on": "full or on_demand",
    },
    "direction": {"in": "inbound", "out": "outbound", "all": "both"},
    "notice_leg": {"caller": "citizen", "callee": "staff", "all": "both"},
}
EMPTY_WORDS = ("", "~", "null", "Null", "NULL")
DEPARTMENT_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")


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

    @property
    def lines(self) -> tuple[Line, ...]:
        """Every line, in file order."""
        return tuple(line for d in self.departments for line in d.lines)

    def department(self, department_id: str) -> Department | None:
        return next((d for d in self.departments if d.id == department_id), None)

    def counts(self) -> dict[str, int]:
        """Number of lines per mode, every mode present (0 when unused)."""
        counted = Counter(line.mode for line in self.lines)
        return {mode: counted[mode] for mode in MODES}

    def recorded_extensions(self) -> frozenset[str]:
        """Extensions that can be recorded at all (mode full or on_demand)."""
        return frozenset(ext for ext, line in self.by_extension.items() if line.mode != "off")

    def summary(self) -> str:
        """`16 departments, 198 lines: 96 full, 90 on_demand, 12 off` — what `lines check` prints."""
        modes = ", ".join(f"{n} {mode}" for mode, n in self.counts().items())
        return f"{len(self.departments)} departments, {len(self.by_extension)} lines: {modes}"


class TextLoader(yaml.SafeLoader):
    """SafeLoader whose plain scalars are all text: no YAML 1.1 booleans, octals, ints, floats or nulls.

    Quoting still works as usual; emptiness (`~`, `null`, nothing) is judged by the validator,
    which can say which field is empty.
    """


TextLoader.yaml_implicit_resolvers = {}


class _Problems:
    """Collects `(line, message)` pairs; rendered sorted by line once the whole file is walked."""

    def __init__(self, path: str):
        self.path = path
        self.errors: list[tuple[int, str]] = []
        self.warnings: list[tuple[int, str]] = []

    def error(self, node_or_line: yaml.Node | int, message: str) -> None:
        self.errors.append((_line(node_or_line), message))

    def warn(self, node_or_line: yaml.Node | int, message: str) -> None:
        self.warnings.append((_line(node_or_line), message))

    def render(self, items: list[tuple[int, str]], prefix: str = "") -> list[str]:
        return [f"{self.path}:{line}: {prefix}{msg}" for line, msg in sorted(items, key=lambda item: item[0])]


def _line(node_or_line: yaml.Node | int) -> int:
    return node_or_line if isinstance(node_or_line, int) else node_or_line.start_mark.line + 1


def _is_empty(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.style is None and node.value in EMPTY_WORDS


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a set of 'key: value' pairs"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"the text {node.value!r}"


def _mapping(
    node: yaml.MappingNode, allowed: tuple[str, ...], what: str, problems: _Problems
) -> dict[str, tuple]:
    """Keys of a mapping node → (key node, value node); reports unknown and repeated keys."""
    out: dict[str, tuple] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            problems.error(key_node, f"a key in {what} must be a word like 'mode', not {_kind(key_node)}")
            continue
        key = key_node.value
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f" — did you mean '{close[0]}'?" if close else ""
            problems.error(key_node, f"unknown key '{key}' in {what}{hint} (allowed: {', '.join(allowed)})")
            continue
        if key in out:
            first = _line(out[key][0])
            problems.error(
                key_node, f"key '{key}' is given twice in {what} (first on line {first}); keep one"
            )
            continue
        out[key] = (key_node, value_node)
    return out


def _text(
    entry: tuple | None, key: str, what: str, problems: _Problems, required: bool = False
) -> str | None:
    """A scalar value as text; None (after reporting, if required) when missing or empty."""
    if entry is None:
        return None
    key_node, value_node = entry
    if not isinstance(value_node, yaml.ScalarNode):
        problems.error(value_node, f"{key} of {what} must be a single value, not {_kind(value_node)}")
        return None
    if _is_empty(value_node):
        if required:
            problems.error(key_node, f"{key} of {what} is empty; write a value after '{key}:'")
        else:
            problems.error(key_node, f"{key} of {what} is empty; write a value or remove the '{key}:' line")
        return None
    return value_node.value


def _settings(
    fields: dict[str, tuple], what: str, problems: _Problems
) -> dict[str, tuple[str | None, yaml.Node]]:
    """The mode/direction/announcement/notice_leg given at one level → value and the node that set it.

    A value already reported as wrong is kept as None, so the lines that inherit it are not
    reported a second time.
    """
    out: dict[str, tuple[str | None, yaml.Node]] = {}
    for key in SETTING_KEYS:
        if key not in fields:
            continue
        value = _text(fields[key], key, what, problems)
        if value is None:
            out[key] = (None, fields[key][1])
            continue
        allowed = ALLOWED_VALUES.get(key)
        if allowed is not None and value not in allowed:
            hint = VALUE_HINTS[key].get(value.lower())
            if hint is None:
                close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.6)
                hint = close[0] if close else None
            hint_text = f" — did you mean {hint}?" if hint else ""
            problems.error(
                fields[key][1],
                f"unknown {key} '{value}' in {what}{hint_text} (allowed: {', '.join(allowed)})",
            )
            out[key] = (None, fields[key][1])
            continue
        out[key] = (value, fields[key][1])
    return out


def _extension(node: yaml.Node, what: str, problems: _Problems) -> str | None:
    if not isinstance(node, yaml.ScalarNode):
        problems.error(node, f"extension in {what} must be digits like 2101, not {_kind(node)}")
        return None
    if _is_empty(node):
        problems.error(node, f"extension in {what} is empty ('{node.value}'); write the digits, e.g. 2101")
        return None
    value = node.value
    if not (value.isascii() and value.isdigit()):
        problems.error(node, f"extension '{value}' in {what} is not all digits (0-9 only, e.g. 2101 or 0336)")
        return None
    return value


def parse_plan(
    text: str,
    path: str = "config/lines.yaml",
    base_dir: Path | None = None,
    file_exists: Callable[[Path], bool] = Path.is_file,
) -> Plan:
    """Validate the text of a lines file; return the Plan or raise LinesError with every problem.

    Announcement paths that are relative are taken from `base_dir`. When `base_dir` is None no
    file is looked at (fully pure) and announcements stay as written; otherwise they become
    absolute and a missing file is a warning in `Plan.warnings` (the file may be installed later).
    """
    problems = _Problems(path)
    loader = TextLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise LinesError(
            [f"{path}:{line}: not valid YAML: {exc.problem or exc.context} (check indentation and quotes)"]
        ) from None
    except yaml.YAMLError as exc:
        position = getattr(exc, "position", 0) or 0
        line = text[:position].count("\n") + 1
        raise LinesError([f"{path}:{line}: not readable as YAML: {exc}"]) from None
    finally:
        loader.dispose()

    if root is None or _is_empty(root):
        raise LinesError([f"{path}:1: the file is empty; it needs 'defaults:' and a 'departments:' list"])
    if not isinstance(root, yaml.MappingNode):
        raise LinesError([f"{path}:{_line(root)}: the file must start with 'defaults:' and 'departments:'"])

    top = _mapping(root, TOP_KEYS, "the file", problems)
    defaults: dict[str, tuple[str, yaml.Node | None]] = {k: (v, None) for k, v in BUILTIN_DEFAULTS.items()}
    if "defaults" in top:
        node = top["defaults"][1]
        if isinstance(node, yaml.MappingNode):
            defaults.update(
                _settings(_mapping(node, SETTING_KEYS, "defaults", problems), "defaults", problems)
            )
        elif not _is_empty(node):
            problems.error(
                node, f"defaults must be 'key: value' lines (mode, direction, ...), not {_kind(node)}"
            )

    departments: list[Department] = []
    seen_ext: dict[str, tuple[int, str]] = {}
    seen_dept: dict[str, int] = {}
    announcements: dict[tuple[str, int], list[str]] = {}

    dept_nodes: list[yaml.Node] = []
    if "departments" not in top:
        problems.error(root, "missing 'departments:' — the list of departments and their lines")
    else:
        key_node, node = top["departments"]
        if isinstance(node, yaml.SequenceNode) and node.value:
            dept_nodes = node.value
        elif isinstance(node, yaml.SequenceNode) or _is_empty(node):
            problems.error(key_node, "'departments:' is empty; list the departments with '- id: ...'")
        else:
            problems.error(node, f"'departments:' must be a list of '- id: ...' entries, not {_kind(node)}")

    for dept_node in dept_nodes:
        if not isinstance(dept_node, yaml.MappingNode):
            problems.error(
                dept_node, f"a department must be 'id:', 'name:' and 'lines:', not {_kind(dept_node)}"
            )
            continue
        written = next((v.value for k, v in dept_node.value if getattr(k, "value", None) == "id"), None)
        if isinstance(written, str) and DEPARTMENT_ID.match(written):
            where = f"department '{written}'"
        else:
            where = f"the department on line {_line(dept_node)}"
        fields = _mapping(dept_node, DEPARTMENT_KEYS, where, problems)
        dept_id = _text(fields.get("id"), "id", where, problems, required=True)
        if "id" not in fields:
            problems.error(dept_node, "department is missing 'id:' (a short ASCII name such as welfare)")
        elif dept_id is not None:
            id_node = fields["id"][1]
            if not dept_id.isascii():
                problems.error(
                    id_node,
                    f"department id '{dept_id}' is not ASCII; use English letters, digits, - or _ "
                    "(the Korean name goes in 'name:')",
                )
                dept_id = None
            elif not DEPARTMENT_ID.match(dept_id):
                problems.error(
                    id_node,
                    f"department id '{dept_id}' must start with a letter and hold only letters, digits, - or _ "
                    "(it becomes part of storage paths)",
                )
                dept_id = None
            elif dept_id in seen_dept:
                problems.error(
                    id_node, f"department id '{dept_id}' is used twice (first on line {seen_dept[dept_id]})"
                )
            else:
                seen_dept[dept_id] = _line(id_node)
        where = f"department '{dept_id}'" if dept_id else where
        dept_name = _text(fields.get("name"), "name", where, problems, required=True)
        if "name" not in fields:
            problems.error(dept_node, f"{where} is missing 'name:' (its Korean name, e.g. 주민복지실)")
        dept_settings = {**defaults, **_settings(fields, where, problems)}

        line_nodes: list[yaml.Node] = []
        if "lines" not in fields:
            problems.error(dept_node, f"{where} has no lines: add 'lines:' with at least one extension")
        else:
            lines_key, lines_node = fields["lines"]
            if isinstance(lines_node, yaml.SequenceNode) and lines_node.value:
                line_nodes = lines_node.value
            elif isinstance(lines_node, yaml.SequenceNode) or _is_empty(lines_node):
                problems.error(lines_key, f"{where} has no lines: list at least one extension under 'lines:'")
            else:
                problems.error(
                    lines_node,
                    f"'lines:' of {where} must be a list ('- 2101' per line), not {_kind(lines_node)}",
                )

        lines: list[Line] = []
        for line_node in line_nodes:
            line_fields: dict[str, tuple] = {}
            if isinstance(line_node, yaml.MappingNode):
                written = next(
                    (v.value for k, v in line_node.value if getattr(k, "value", None) == "ext"), None
                )
                label = f"line {written}" if isinstance(written, str) else "this line"
                line_fields = _mapping(line_node, LINE_KEYS, label, problems)
                if "ext" not in line_fields:
                    problems.error(
                        line_node, f"a line of {where} is missing 'ext:' (its extension, e.g. ext: \"2101\")"
                    )
                    continue
                ext = _extension(line_fields["ext"][1], where, problems)
            elif isinstance(line_node, yaml.ScalarNode):
                ext = _extension(line_node, where, problems)
            else:
                problems.error(
                    line_node, f"a line of {where} must be an extension or 'ext: ...', not {_kind(line_node)}"
                )
                continue
            if ext is None:
                continue
            if ext in seen_ext:
                first_line, first_dept = seen_ext[ext]
                problems.error(
                    line_node,
                    f"extension {ext} is listed twice (first on line {first_line}, department {first_dept})",
                )
                continue
            seen_ext[ext] = (_line(line_node), dept_id or "?")
            what = f"line {ext}"
            values = {**dept_settings, **_settings(line_fields, what, problems)}
            line_name = _text(line_fields.get("name"), "name", what, problems) or ""
            if "mode" not in values:
                problems.error(
                    line_node, f"{what} has no mode: set 'mode:' under defaults, in {where}, or on the line"
                )
                continue
            if any(value is None for value, _node in values.values()):
                continue  # a value it sets or inherits is wrong, and is already reported where it is written
            announcement, ann_node = values["announcement"]
            announcements.setdefault((announcement, _line(ann_node) if ann_node else 0), []).append(ext)
            if base_dir is not None and not Path(announcement).is_absolute():
                announcement = str(base_dir / announcement)
            lines.append(
                Line(
                    extension=ext,
                    department=dept_id or "",
                    department_name=dept_name or "",
                    mode=values["mode"][0],
                    direction=values["direction"][0],
                    announcement=announcement,
                    notice_leg=values["notice_leg"][0],
                    name=line_name,
                )
            )
        departments.append(Department(id=dept_id or "", name=dept_name or "", lines=tuple(lines)))

    if problems.errors:
        raise LinesError(problems.render(problems.errors))

    if base_dir is not None:
        for (announcement, line_no), exts in announcements.items():
            target = Path(announcement) if Path(announcement).is_absolute() else base_dir / announcement
            if not file_exists(target):
                origin = "" if line_no else " (the built-in default)"
                problems.warn(
                    line_no or 1,
                    f"announcement file {target} not found{origin}; used by {len(exts)} line(s) — "
                    "install it before these lines are recorded, or the notice cannot be played",
                )
    by_extension = MappingProxyType({line.extension: line for d in departments for line in d.lines})
    return Plan(tuple(departments), by_extension, tuple(problems.render(problems.warnings, "warning: ")))


def load_plan(path: str | Path, base_dir: Path | None = None) -> Plan:
    """Read and validate a lines file; announcements are looked up from `base_dir` (default: the current directory)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LinesError([f"{path}:1: file not found"]) from None
    except UnicodeDecodeError as exc:
        raise LinesError([f"{path}:1: not UTF-8 text ({exc.reason}); save the file as UTF-8"]) from None
    return parse_plan(text, str(path), base_dir=Path.cwd() if base_dir is None else base_dir)
