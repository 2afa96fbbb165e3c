"""The FreeSWITCH kit the telecom staff install: XML files, generated dialplan, systemd unit, notice WAV."""

from __future__ import annotations

import array
import math
import re
import shutil
import subprocess
import wave
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from yangyang_rec import cli
from yangyang_rec.dialplan import (
    DAEMON_CHANNEL_VARIABLES,
    ON_DEMAND_DTMF_CODE,
    ON_DEMAND_EVENT_SUBCLASS,
    RECORDING_CHANNEL_VARIABLES,
    render_dialplan,
)
from yangyang_rec.lines import Department, Line, Plan, load_plan
from yangyang_rec.notice import NoticeError, check_notice, convert_wav_python, render_notice

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / "freeswitch"
GENERATED = KIT / "dialplan" / "yangyang-rec-lines.xml"
UNIT = ROOT / "deploy" / "yangyang-rec.service"
TMPFILES = ROOT / "deploy" / "yangyang-rec.tmpfiles.conf"
NOTICE = KIT / "sounds" / "notice-ko.wav"

# Channel variables FreeSWITCH itself reads, with where FreeSWITCH 1.10 (signalwire/freeswitch) reads them.
FREESWITCH_VARIABLES = {
    "RECORD_STEREO": "src/switch_ivr_async.c, switch_ivr_record_session_event(): recording_var_true(..., 'RECORD_STEREO')",
    "record_sample_rate": "src/switch_ivr_async.c, switch_ivr_record_session_event(): get_recording_var(..., 'record_sample_rate')",
    "media_bug_answer_req": "src/switch_core_media_bug.c, switch_core_media_bug_add(): sets SMBF_ANSWER_REQ",
    "recording_follow_transfer": "src/mod/applications/mod_commands/mod_commands.c (uuid_transfer -bleg), "
    "src/mod/endpoints/mod_sofia/sofia.c (REFER)",
    "hangup_after_bridge": "src/include/switch_types.h, SWITCH_HANGUP_AFTER_BRIDGE_VARIABLE",
    "bind_meta_key": "src/switch_ivr_async.c, switch_ivr_bind_dtmf_meta_session()",
}
# Dialplan applications the kit uses, all from src/mod/applications/mod_dptools/mod_dptools.c.
FREESWITCH_APPLICATIONS = {"set", "export", "bind_meta_app", "event"}


def xml_files() -> list[Path]:
    return sorted(KIT.rglob("*.xml"))


def variable_problems(root: ET.Element, defined_globals: set[str]) -> list[str]:
    """Every channel variable the XML sets or reads that neither FreeSWITCH nor the daemon knows."""
    known = set(FREESWITCH_VARIABLES) | set(DAEMON_CHANNEL_VARIABLES)
    problems = []
    for action in root.iter("action"):
        app, data = action.get("application", ""), action.get("data", "")
        if app not in FREESWITCH_APPLICATIONS:
            problems.append(f"unknown application {app!r}")
        if app in ("set", "export"):
            name = data.split("=", 1)[0].removeprefix("nolocal:")
            if name not in known:
                problems.append(f"{app} of unknown variable {name!r}")
    text = ET.tostring(root, encoding="unicode")
    for name in re.findall(r"(?<!\$)\$\{([^}]+)\}", text):
        if name not in known:
            problems.append(f"reads unknown channel variable {name!r}")
    for name in re.findall(r"\$\$\{([^}]+)\}", text):
        if name not in defined_globals:
            problems.append(f"global variable {name!r} is not set by the kit's vars file")
    return problems


def kit_globals() -> set[str]:
    names = set()
    for path in xml_files():
        for pre in ET.parse(path).getroot().iter("X-PRE-PROCESS"):
            if pre.get("cmd") == "set":
                names.add(pre.get("data", "").split("=", 1)[0])
    return names


# ---- XML files ---------------------------------------------------------------------------------


def test_kit_has_the_files_the_operator_guide_names():
    names = {p.relative_to(KIT).as_posix() for p in xml_files()}
    assert {
        "dialplan/yangyang-rec-lines.xml",
        "autoload_configs/event_socket.conf.xml",
        "vars/yangyang-rec-vars.xml",
    } <= names


@pytest.mark.parametrize("path", xml_files(), ids=lambda p: p.relative_to(KIT).as_posix())
def test_every_xml_file_is_well_formed_and_uses_only_known_variables(path):
    root = ET.parse(path).getroot()
    assert variable_problems(root, kit_globals()) == []


def test_variable_check_catches_unknown_variables_and_applications():
    bad = ET.fromstring(
        '<include><extension name="x"><condition>'
        '<action application="set" data="yyrec_bogus=1"/>'
        '<action application="export" data="nolocal:RECORD_STEREO=true"/>'
        '<action application="system" data="rm -rf /"/>'
        '<action application="set" data="x_line=${not_a_var}"/>'
        '<action application="log" data="$${undefined_global}"/>'
        "</condition></extension></include>"
    )
    problems = variable_problems(bad, set())
    assert "set of unknown variable 'yyrec_bogus'" in problems
    assert "unknown application 'system'" in problems
    assert "reads unknown channel variable 'not_a_var'" in problems
    assert "global variable 'undefined_global' is not set by the kit's vars file" in problems
    assert not any("RECORD_STEREO" in p for p in problems)


def test_recording_variables_are_all_freeswitch_variables():
    assert set(RECORDING_CHANNEL_VARIABLES) <= set(FREESWITCH_VARIABLES)
    assert not set(DAEMON_CHANNEL_VARIABLES) & set(FREESWITCH_VARIABLES)
    assert all(name.startswith("yyrec_") for name in DAEMON_CHANNEL_VARIABLES)


def test_event_socket_listens_on_loopback_with_an_acl_and_no_default_password():
    params = {
        p.get("name"): p.get("value")
        for p in ET.parse(KIT / "autoload_configs" / "event_socket.conf.xml").getroot().iter("param")
    }
    assert params["listen-ip"] == "127.0.0.1"
    assert params["listen-port"] == "8021"
    assert params["apply-inbound-acl"] == "loopback.auto"
    assert params["password"] == "$${yyrec_esl_password}"
    vars_file = ET.parse(KIT / "vars" / "yangyang-rec-vars.xml").getroot()
    (pre,) = [p for p in vars_file.iter("X-PRE-PROCESS") if p.get("cmd") == "set"]
    name, value = pre.get("data").split("=", 1)
    assert name == "yyrec_esl_password" and value.startswith("CHANGE-ME") and " " not in value


# ---- generated dialplan ------------------------------------------------------------------------


def test_committed_dialplan_matches_config_lines_yaml():
    plan = load_plan(ROOT / "config" / "lines.yaml", base_dir=ROOT)
    assert GENERATED.read_text(encoding="utf-8") == render_dialplan(plan), (
        "freeswitch/dialplan/yangyang-rec-lines.xml is stale: run `make dialplan` and commit it"
    )


SMALL_PLAN = """\
departments:
  - id: welfare
    name: 주민복지실
    mode: full
    lines:
      - "0336"
      - {ext: "6202", direction: inbound}
      - {ext: "6203", mode: off}
  - id: admin
    name: 행정과 -- 민원
    mode: on_demand
    direction: both
    lines:
      - "6121"
      - {ext: "6122", direction: outbound}
"""


def conditions(xml_text: str) -> dict[str, tuple[str, str, list[str]]]:
    """extension name -> (field, expression, [action data...])"""
    out = {}
    for ext in ET.fromstring(xml_text).iter("extension"):
        assert ext.get("continue") == "true"
        (cond,) = ext.iter("condition")
        actions = [f"{a.get('application')} {a.get('data')}" for a in cond.iter("action")]
        out[ext.get("name")] = (cond.get("field"), cond.get("expression"), actions)
    return out


def matched(expression: str, candidates: list[str]) -> list[str]:
    return [c for c in candidates if re.fullmatch(expression, c)]


def test_dialplan_follows_the_plan(tmp_path):
    lines_file = tmp_path / "lines.yaml"
    lines_file.write_text(SMALL_PLAN, encoding="utf-8")
    text = render_dialplan(load_plan(lines_file, base_dir=ROOT))
    assert render_dialplan(load_plan(lines_file, base_dir=ROOT)) == text
    found = conditions(text)
    exts = ["0336", "6202", "6203", "6121", "6122", "336", "62021"]
    assert list(found) == [
        "yyrec-welfare-outbound-full",
        "yyrec-admin-outbound-on_demand",
        "yyrec-welfare-inbound-full",
        "yyrec-admin-inbound-on_demand",
    ]
    field, expr, actions = found["yyrec-welfare-outbound-full"]
    assert field == "caller_id_number" and matched(expr, exts) == ["0336"]
    assert actions[:5] == [f"set {name}={value}" for name, value in RECORDING_CHANNEL_VARIABLES.items()]
    assert not any(a.startswith("bind_meta_app") for a in actions)
    field, expr, actions = found["yyrec-welfare-inbound-full"]
    assert field == "destination_number" and matched(expr, exts) == ["0336", "6202"]
    field, expr, actions = found["yyrec-admin-outbound-on_demand"]
    assert matched(expr, exts) == ["6121", "6122"]
    assert f"bind_meta_app 2 a ai event::Event-Name=CUSTOM,Event-Subclass={ON_DEMAND_EVENT_SUBCLASS}" in actions
    field, expr, actions = found["yyrec-admin-inbound-on_demand"]
    assert matched(expr, exts) == ["6121"]
    assert f"bind_meta_app 2 b ai event::Event-Name=CUSTOM,Event-Subclass={ON_DEMAND_EVENT_SUBCLASS}" in actions
    assert ON_DEMAND_DTMF_CODE == "*2" and "*2" in text
    assert "행정과 - - 민원" in text


def test_dialplan_escapes_hostile_values_and_handles_an_empty_plan():
    line = Line('1"2<3>&', "d&x", 'A--B"<', "full", "both", "notice.wav", "citizen")
    plan = Plan((Department('d&x', 'A--B"<-', (line,)),), {line.extension: line})
    root = ET.fromstring(render_dialplan(plan))
    (cond,) = [c for c in root.iter("condition") if c.get("field") == "destination_number"]
    assert re.fullmatch(cond.get("expression"), '1"2<3>&')
    assert not re.fullmatch(cond.get("expression"), "1x2<3>&")
    empty = ET.fromstring(render_dialplan(Plan((), {})))
    assert list(empty.iter("extension")) == []


def test_dialplan_command_writes_and_checks(tmp_path, capsys):
    lines_file, out = tmp_path / "lines.yaml", tmp_path / "out" / "lines.xml"
    lines_file.write_text(SMALL_PLAN, encoding="utf-8")
    assert cli.main(["dialplan", "--lines", str(lines_file), "--check", "--out", str(out)]) == 1
    assert cli.main(["dialplan", "--lines", str(lines_file), "--out", str(out)]) == 0
    assert cli.main(["dialplan", "--lines", str(lines_file), "--check", "--out", str(out)]) == 0
    lines_file.write_text(SMALL_PLAN.replace('"6121"', '"6129"'), encoding="utf-8")
    assert cli.main(["dialplan", "--lines", str(lines_file), "--check", "--out", str(out)]) == 1
    assert "stale" in capsys.readouterr().err
    before = out.read_text(encoding="utf-8")
    lines_file.write_text("departments: [", encoding="utf-8")
    assert cli.main(["dialplan", "--lines", str(lines_file), "--out", str(out)]) == 1
    assert out.read_text(encoding="utf-8") == before


# ---- systemd -----------------------------------------------------------------------------------


def unit_settings(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        if "=" in raw and not raw.startswith(("#", ";")):
            key, value = raw.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_runs_hardened_as_the_service_user():
    unit = unit_settings(UNIT)
    assert unit["User"] == ["yyrec"]
    assert unit["ExecStart"] == ["/opt/yangyang-rec/.venv/bin/yangyang-rec run"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["ProtectSystem"] == ["strict"] and unit["NoNewPrivileges"] == ["yes"]
    assert unit["PrivateTmp"] == ["yes"] and unit["UMask"] == ["0027"]
    assert "TimeoutStopSec" in unit and "freeswitch" in unit["SupplementaryGroups"]
    writable = set(" ".join(unit["ReadWritePaths"]).split())
    dirs = {}
    for raw in TMPFILES.read_text(encoding="utf-8").splitlines():
        if raw and not raw.startswith("#"):
            kind, path, mode, user, group, _age = raw.split()
            assert kind == "d"
            dirs[path] = (mode, user, group)
    assert writable == set(dirs), "the unit may write exactly the directories tmpfiles creates"
    assert dirs["/var/spool/yangyang-rec"] == ("2770", "yyrec", "freeswitch")
    assert dirs["/var/lib/yangyang-rec"] == ("0750", "yyrec", "yyrec")


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed on this machine")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    # verify insists that ExecStart exists; point it at this checkout's console script, change nothing else.
    script = ROOT / ".venv" / "bin" / "yangyang-rec"
    if not script.exists():
        pytest.skip("no .venv/bin/yangyang-rec to stand in for /opt/yangyang-rec/.venv/bin/yangyang-rec")
    text = UNIT.read_text(encoding="utf-8")
    copy = tmp_path / "yangyang-rec.service"
    copy.write_text(text.replace("/opt/yangyang-rec/.venv/bin/yangyang-rec", str(script)), encoding="utf-8")
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    complaints = [ln for ln in done.stderr.splitlines() if copy.name in ln or "yangyang-rec" in ln]
    assert done.returncode == 0 and complaints == [], done.stderr


# ---- notice ------------------------------------------------------------------------------------


def write_wav(path: Path, *, channels=1, width=2, rate=8000, frames=800, freq=440.0) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 2:
            samples = array.array(
                "h", (int(8000 * math.sin(2 * math.pi * freq * (i // channels) / rate)) for i in range(frames * channels))
            )
            w.writeframes(samples.tobytes())
        else:
            w.writeframes(bytes(frames * channels * width))
    return path


def test_committed_notice_is_playable():
    check_notice(NOTICE)
    with wave.open(str(NOTICE)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        assert w.getnframes() / w.getframerate() > 5


def test_notice_text_is_the_countys():
    text = (KIT / "sounds" / "notice-ko.txt").read_text(encoding="utf-8")
    assert text.startswith("안녕하세요. 활력이 넘치는 명품도시 양양군입니다.")
    assert "통화내용은 녹음됩니다." in text


def test_notice_check_accepts_8_and_16_khz_mono(tmp_path):
    check_notice(write_wav(tmp_path / "a.wav"))
    check_notice(write_wav(tmp_path / "b.wav", rate=16000))


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda d: d / "missing.wav", "not found"),
        (lambda d: d, "not a file"),
        (lambda d: (d / "t.wav").write_text("hello, not audio") and d / "t.wav", "not a WAV"),
        (lambda d: (d / "e.wav").write_bytes(b"") or d / "e.wav", "not a WAV"),
        (lambda d: write_wav(d / "s.wav", channels=2), "2 channels"),
        (lambda d: write_wav(d / "h.wav", rate=44100), "44100 Hz"),
        (lambda d: write_wav(d / "u8.wav", width=1), "8-bit"),
        (lambda d: write_wav(d / "z.wav", frames=0), "no audio"),
        (lambda d: float_wav(d / "f.wav"), "not linear PCM"),
        (lambda d: truncated_wav(d / "c.wav"), "no audio"),
    ],
    ids=["missing", "directory", "text", "zero-bytes", "stereo", "44k", "8bit", "empty", "float", "no-data-chunk"],
)
def test_notice_check_rejects(tmp_path, make, words):
    path = make(tmp_path)
    with pytest.raises(NoticeError) as exc:
        check_notice(path)
    assert words in str(exc.value)
    assert str(path) in str(exc.value) and "make notice" in str(exc.value)


def float_wav(path: Path) -> Path:
    fmt = (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    fmt += (32000).to_bytes(4, "little") + (4).to_bytes(2, "little") + (32).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + (400).to_bytes(4, "little") + bytes(400)
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    return path


def truncated_wav(path: Path) -> Path:
    full = write_wav(path).read_bytes()
    path.write_bytes(full[: full.index(b"data")])
    return path


def test_notice_check_command(tmp_path, capsys):
    assert cli.main(["notice", "check", str(NOTICE)]) == 0
    assert "8000 Hz" in capsys.readouterr().out
    assert cli.main(["notice", "check", str(write_wav(tmp_path / "s.wav", channels=2))]) == 1
    assert "NOT PLAYABLE" in capsys.readouterr().err


def test_python_resampler_keeps_pitch_and_length(tmp_path):
    src = write_wav(tmp_path / "src.wav", rate=22050, frames=22050, freq=1000.0)
    dst = tmp_path / "dst.wav"
    convert_wav_python(src, dst)
    check_notice(dst)
    with wave.open(str(dst)) as w:
        assert w.getframerate() == 8000 and abs(w.getnframes() - 8000) <= 1
        samples = array.array("h", w.readframes(w.getnframes()))
    crossings = sum(1 for a, b in zip(samples, samples[1:], strict=False) if (a < 0) != (b < 0))
    assert 1950 <= crossings <= 2050  # 1 kHz for one second


def test_render_without_espeak_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    out = tmp_path / "notice.wav"
    with pytest.raises(NoticeError) as exc:
        render_notice(KIT / "sounds" / "notice-ko.txt", out)
    assert "apt-get install espeak-ng" in str(exc.value) and str(out) in str(exc.value)
    assert not out.exists()


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed (apt-get install espeak-ng)")
@pytest.mark.parametrize("use_sox", [True, False], ids=["sox", "python"])
def test_render_makes_a_playable_notice(tmp_path, use_sox):
    if use_sox and not shutil.which("sox"):
        pytest.skip("sox is not installed")
    out = tmp_path / "notice.wav"
    used = render_notice(KIT / "sounds" / "notice-ko.txt", out, use_sox=use_sox)
    assert used == ("sox" if use_sox else "python")
    check_notice(out)
    with wave.open(str(out)) as w:
        assert w.getnframes() / w.getframerate() > 5
