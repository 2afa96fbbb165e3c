"""config/lines.yaml: the YAML 1.1 traps, every error kind with its line, and the shipped plan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from yangyang_rec.cli import main
from yangyang_rec.lines import DEFAULT_ANNOUNCEMENT, LinesError, load_plan, parse_plan

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "lines.yaml"
CONSOLE_SCRIPT = Path(sys.executable).parent / "yangyang-rec"


def one_line(value: str, department_mode: str = "full") -> str:
    """A minimal file with one department whose only line is written as `value`."""
    return f"""\
departments:
  - id: welfare
    name: 주민복지실
    mode: {department_mode}
    lines:
      - {value}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(LinesError) as caught:
        parse_plan(text, "lines.yaml")
    return caught.value.problems


# --- YAML 1.1 traps: plain scalars stay text ------------------------------------------------


def test_leading_zero_extension_stays_text_not_octal():
    plan = parse_plan(one_line("0336"))
    assert list(plan.by_extension) == ["0336"]
    assert plan.line("0336").extension == "0336"
    assert plan.line("222") is None  # what YAML 1.1 octal would have made of it


def test_plain_four_digits_stay_text():
    plan = parse_plan(one_line("6700"))
    assert plan.line("6700") is not None
    assert isinstance(next(iter(plan.by_extension)), str)


def test_quoted_and_unquoted_extensions_are_the_same():
    plan = parse_plan(one_line('"0336"'))
    assert plan.line("0336") is not None


@pytest.mark.parametrize("word", ["off", "on_demand", "full"])
def test_mode_words_are_modes(word):
    assert parse_plan(one_line("6201", department_mode=word)).line("6201").mode == word


@pytest.mark.parametrize("word", ["no", "on", "yes", "true", "false", "True", "OFF"])
def test_yaml_boolean_words_are_words_and_rejected_as_modes(word):
    (problem,) = problems_of(one_line("6201", department_mode=word))
    assert problem.startswith("lines.yaml:4: unknown mode '" + word + "'")
    assert "allowed: full, on_demand, off" in problem


def test_mode_no_hints_at_off():
    (problem,) = problems_of(one_line("6201", department_mode="no"))
    assert "did you mean off?" in problem


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "true", "0336", "1e3"])
def test_line_name_words_stay_text(word):
    plan = parse_plan(one_line(f'{{ext: "6201", name: {word}}}'))
    assert plan.line("6201").name == word


@pytest.mark.parametrize("value", ["1_000", "0x1F", "1e3", "6.201", "+6201", "62 01", "0o17", "٦٢٠١"])
def test_number_looking_extensions_are_not_converted_and_are_refused(value):
    (problem,) = problems_of(one_line(value))
    assert problem == (
        f"lines.yaml:6: extension '{value}' in department 'welfare' is not all digits (0-9 only, e.g. 2101 or 0336)"
    )


@pytest.mark.parametrize("value", ["~", "null", "NULL", "''"])
def test_null_or_empty_extension_is_refused_as_empty(value):
    (problem,) = problems_of(one_line(value))
    if value == "''":  # quoted empty text: not a null, simply no digits
        assert "is not all digits" in problem
    else:
        assert problem.startswith("lines.yaml:6: extension in department 'welfare' is empty")


def test_empty_line_entry_is_refused():
    (problem,) = problems_of(one_line(""))
    assert problem.startswith("lines.yaml:6: extension in department 'welfare' is empty")


# --- every error kind, with its line --------------------------------------------------------

DUPLICATE_ACROSS_DEPARTMENTS = """\
departments:
  - id: welfare
    name: 주민복지실
    mode: full
    lines:
      - 6201
  - id: tax
    name: 세무회계과
    mode: full
    lines:
      - 6421
      - 6201
"""


def test_duplicate_extension_across_departments_names_the_first_line():
    assert problems_of(DUPLICATE_ACROSS_DEPARTMENTS) == [
        "lines.yaml:12: extension 6201 is listed twice (first on line 6, department welfare)"
    ]


def test_duplicate_extension_written_differently_in_one_department():
    text = one_line("0336") + '      - {ext: "0336", name: 팀장}\n'
    assert problems_of(text) == [
        "lines.yaml:7: extension 0336 is listed twice (first on line 6, department welfare)"
    ]


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("mode", "maybe", "full, on_demand, off"),
        ("direction", "sideways", "inbound, outbound, both"),
        ("notice_leg", "manager", "citizen, staff, both"),
    ],
)
def test_unknown_value_lists_the_allowed_ones(key, value, allowed):
    (problem,) = problems_of(one_line(f'{{ext: "6201", {key}: {value}}}'))
    assert problem == f"lines.yaml:6: unknown {key} '{value}' in line 6201 (allowed: {allowed})"


def test_unknown_value_in_defaults():
    text = "defaults:\n  direction: in\n" + one_line("6201")
    (problem,) = problems_of(text)
    assert problem.startswith("lines.yaml:2: unknown direction 'in' in defaults — did you mean inbound?")


def test_unknown_key_suggests_the_close_one():
    text = one_line("6201").replace("    mode: full\n", "    mdoe: full\n    mode: full\n")
    (problem,) = problems_of(text)
    assert problem.startswith(
        "lines.yaml:4: unknown key 'mdoe' in department 'welfare' — did you mean 'mode'?"
    )


def test_unknown_key_without_a_close_one_lists_the_allowed_keys():
    (problem,) = problems_of("colour: blue\n" + one_line("6201"))
    assert problem == "lines.yaml:1: unknown key 'colour' in the file (allowed: defaults, departments)"


def test_unknown_key_on_a_line():
    (problem,) = problems_of(one_line('{ext: "6201", notice: staff}'))
    assert problem.startswith("lines.yaml:6: unknown key 'notice' in line 6201 — did you mean 'notice_leg'?")


def test_key_given_twice_is_refused():
    text = one_line("6201").replace("    mode: full\n", "    mode: full\n    mode: off\n")
    (problem,) = problems_of(text)
    assert problem.startswith(
        "lines.yaml:5: key 'mode' is given twice in department 'welfare' (first on line 4)"
    )


@pytest.mark.parametrize("lines_value", ["", " []", " ~"])
def test_department_with_no_lines(lines_value):
    text = f"departments:\n  - id: welfare\n    name: 주민복지실\n    mode: full\n    lines:{lines_value}\n"
    assert problems_of(text) == [
        "lines.yaml:5: department 'welfare' has no lines: list at least one extension under 'lines:'"
    ]


def test_department_missing_lines_key():
    text = "departments:\n  - id: welfare\n    name: 주민복지실\n    mode: full\n"
    assert problems_of(text) == [
        "lines.yaml:2: department 'welfare' has no lines: add 'lines:' with at least one extension"
    ]


def test_missing_department_id_and_name():
    text = "departments:\n  - mode: full\n    lines:\n      - 6201\n"
    problems = problems_of(text)
    assert problems == [
        "lines.yaml:2: department is missing 'id:' (a short ASCII name such as welfare)",
        "lines.yaml:2: the department on line 2 is missing 'name:' (its Korean name, e.g. 주민복지실)",
    ]


def test_line_mapping_missing_ext():
    (problem,) = problems_of(one_line("{name: 팀장}"))
    assert (
        problem
        == "lines.yaml:6: a line of department 'welfare' is missing 'ext:' (its extension, e.g. ext: \"2101\")"
    )


def test_missing_mode_everywhere():
    text = "departments:\n  - id: welfare\n    name: 주민복지실\n    lines:\n      - 6201\n"
    (problem,) = problems_of(text)
    assert problem.startswith("lines.yaml:5: line 6201 has no mode:")


def test_missing_departments():
    assert problems_of("defaults:\n  mode: full\n") == [
        "lines.yaml:1: missing 'departments:' — the list of departments and their lines"
    ]


def test_duplicate_department_id():
    text = one_line("6201") + "  - id: welfare\n    name: 복지\n    mode: off\n    lines:\n      - 6202\n"
    assert problems_of(text) == ["lines.yaml:7: department id 'welfare' is used twice (first on line 2)"]


def test_non_ascii_department_id():
    text = one_line("6201").replace("id: welfare", "id: 복지")
    (problem,) = problems_of(text)
    assert problem.startswith("lines.yaml:2: department id '복지' is not ASCII")
    assert "'name:'" in problem


def test_department_id_unfit_for_a_storage_path():
    (problem,) = problems_of(one_line("6201").replace("id: welfare", "id: ../etc"))
    assert problem.startswith("lines.yaml:2: department id '../etc' must start with a letter")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "lines.yaml:1: the file is empty"),
        ("# only a comment\n", "lines.yaml:1: the file is empty"),
        ("- 6201\n", "lines.yaml:1: the file must start with 'defaults:' and 'departments:'"),
        ("departments:\n\t- id: x\n", "lines.yaml:2: not valid YAML"),
        ("departments: [\n", "lines.yaml:2: not valid YAML"),
    ],
)
def test_unusable_files(text, expected):
    (problem,) = problems_of(text)
    assert problem.startswith(expected)


def test_every_problem_is_reported_at_once_sorted_by_line():
    text = """\
defaults:
  mode: sometimes
departments:
  - id: welfare
    name: 주민복지실
    lines:
      - 6201
      - 62a1
  - id: tax
    nmae: 세무회계과
    lines: []
  - id: welfare
    name: 복지
    lines:
      - 6201
"""
    problems = problems_of(text)
    assert [p.split(":")[1] for p in problems] == ["2", "8", "9", "10", "11", "12", "15"]
    assert "unknown mode 'sometimes'" in problems[0]
    assert "'62a1'" in problems[1]
    assert "missing 'name:'" in problems[2]
    assert "unknown key 'nmae'" in problems[3] and "did you mean 'name'?" in problems[3]
    assert "has no lines" in problems[4]
    assert "used twice (first on line 4)" in problems[5]
    assert "first on line 7" in problems[6]


# --- values, inheritance, announcements ------------------------------------------------------

INHERITANCE = """\
defaults:
  mode: on_demand
  direction: inbound
  notice_leg: citizen
departments:
  - id: welfare
    name: 주민복지실
    mode: full
    notice_leg: both
    lines:
      - 6201
      - {ext: "6202", name: 팀장, mode: off, direction: outbound, announcement: sounds/other.wav}
  - id: tourism
    name: 관광문화체육과
    lines:
      - 6501
"""


def test_nearest_setting_wins():
    plan = parse_plan(INHERITANCE)
    a, b, c = plan.line("6201"), plan.line("6202"), plan.line("6501")
    assert (a.mode, a.direction, a.notice_leg, a.announcement) == (
        "full",
        "inbound",
        "both",
        DEFAULT_ANNOUNCEMENT,
    )
    assert (b.mode, b.direction, b.notice_leg, b.announcement, b.name) == (
        "off",
        "outbound",
        "both",
        "sounds/other.wav",
        "팀장",
    )
    assert (c.mode, c.department, c.department_name) == ("on_demand", "tourism", "관광문화체육과")
    assert a.records("inbound") and not a.records("outbound")
    assert plan.counts() == {"full": 1, "on_demand": 1, "off": 1}
    assert plan.recorded_extensions() == {"6201", "6501"}
    assert plan.summary() == "2 departments, 3 lines: 1 full, 1 on_demand, 1 off"
    assert plan.warnings == ()  # no base_dir: nothing looked up


def test_missing_announcement_is_a_warning_at_the_line_that_names_it(tmp_path):
    (tmp_path / "freeswitch" / "sounds").mkdir(parents=True)
    (tmp_path / DEFAULT_ANNOUNCEMENT).write_bytes(b"RIFF")
    plan = parse_plan(INHERITANCE, "lines.yaml", base_dir=tmp_path)
    assert plan.warnings == (
        f"lines.yaml:12: warning: announcement file {tmp_path / 'sounds/other.wav'} not found; used by 1 line(s)"
        " — install it before these lines are recorded, or the notice cannot be played",
    )
    assert plan.line("6201").announcement == str(tmp_path / DEFAULT_ANNOUNCEMENT)


def test_announcement_check_is_injectable():
    plan = parse_plan(INHERITANCE, "lines.yaml", base_dir=Path("/srv"), file_exists=lambda p: True)
    assert plan.warnings == ()
    plan = parse_plan(INHERITANCE, "lines.yaml", base_dir=Path("/srv"), file_exists=lambda p: False)
    assert len(plan.warnings) == 2
    assert plan.warnings[0].startswith(
        "lines.yaml:1: warning: announcement file /srv/freeswitch/sounds/notice-ko.wav"
    )
    assert "(the built-in default)" in plan.warnings[0]


def test_plan_is_read_only():
    plan = parse_plan(INHERITANCE)
    with pytest.raises(TypeError):
        plan.by_extension["9999"] = plan.line("6201")


def test_load_plan_of_a_missing_file(tmp_path):
    with pytest.raises(LinesError) as caught:
        load_plan(tmp_path / "nope.yaml")
    assert caught.value.problems == [f"{tmp_path / 'nope.yaml'}:1: file not found"]


def test_load_plan_of_a_file_not_in_utf8(tmp_path):
    path = tmp_path / "lines.yaml"
    path.write_bytes(one_line("6201").encode("euc-kr"))
    with pytest.raises(LinesError) as caught:
        load_plan(path)
    assert "save the file as UTF-8" in caught.value.problems[0]


# --- the shipped plan ------------------------------------------------------------------------


def test_shipped_plan_has_16_departments_and_198_lines():
    plan = parse_plan(SHIPPED.read_text(encoding="utf-8"), str(SHIPPED))
    assert len(plan.departments) == 16
    assert len(plan.by_extension) == 198
    assert all(d.id.isascii() and not d.name.isascii() for d in plan.departments)
    by_id = {d.id: d for d in plan.departments}
    for must_record in ("welfare", "grievance", "permits", "property", "tax", "water"):
        assert (
            sum(line.mode == "full" for line in by_id[must_record].lines) >= len(by_id[must_record].lines) - 1
        )
    assert plan.line("0336").department == "water"
    assert sum(plan.counts().values()) == 198


def test_cli_check_of_the_shipped_file(capsys):
    assert main(["lines", "check", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("16 departments, 198 lines: ")
    assert out.count("\n") == 1


def test_cli_show_one_department(capsys):
    assert main(["lines", "show", str(SHIPPED), "--department", "water"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["EXTENSION", "DEPARTMENT", "MODE", "DIRECTION", "NOTICE_LEG", "NAME"]
    assert rows[1].split()[:4] == ["0331", "water", "상하수도사업소", "full"]
    assert len(rows) == 13


def test_cli_show_unknown_department(capsys):
    assert main(["lines", "show", str(SHIPPED), "--department", "nope"]) == 1
    assert "the departments are: planning, admin" in capsys.readouterr().err


# --- acceptance: one duplicate, one `mdoe:` typo, one `mode: maybe` ---------------------------


@pytest.fixture
def broken_copy(tmp_path):
    """The shipped file with three mistakes; returns (path, {kind: line number})."""
    lines = SHIPPED.read_text(encoding="utf-8").splitlines(keepends=True)
    where = {}
    dup = lines.index("      - 6202\n")
    lines[dup] = "      - 6201\n"  # 6201 is already the first welfare line
    where["duplicate"] = dup + 1
    mode_lines = [i for i, text in enumerate(lines) if text == "    mode: on_demand\n"]
    lines[mode_lines[0]] = "    mdoe: on_demand\n"
    where["typo"] = mode_lines[0] + 1
    lines[mode_lines[1]] = "    mode: maybe\n"
    where["maybe"] = mode_lines[1] + 1
    path = tmp_path / "lines.yaml"
    path.write_text("".join(lines), encoding="utf-8")
    return path, where


def test_acceptance_three_mistakes_via_main(broken_copy, capsys):
    path, where = broken_copy
    assert main(["lines", "check", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3
    assert where["typo"] < where["duplicate"] < where["maybe"]  # problems come sorted by line
    assert out[0].startswith(
        f"{path}:{where['typo']}: unknown key 'mdoe' in department 'admin' — did you mean 'mode'?"
    )
    assert out[1].startswith(f"{path}:{where['duplicate']}: extension 6201 is listed twice (first on line ")
    assert out[2].startswith(f"{path}:{where['maybe']}: unknown mode 'maybe' in department 'tourism'")


def test_acceptance_via_the_console_script(broken_copy, tmp_path):
    path, where = broken_copy
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "lines", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert [line.split(":")[1] for line in result.stdout.splitlines()] == [
        str(where["typo"]),
        str(where["duplicate"]),
        str(where["maybe"]),
    ]
    assert "3 problem(s)" in result.stderr
