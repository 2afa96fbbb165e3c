"""Settings: defaults, the settings file, YYREC_* and AWS_* variables, clear errors, masked secrets."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from yangyang_rec.cli import main
from yangyang_rec.settings import Settings, SettingsError, load_settings

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "yangyang-rec.yaml"
FIELDS = [f.name for f in dataclasses.fields(Settings)]


@pytest.fixture
def settings_file(tmp_path):
    def write(text: str) -> Path:
        path = tmp_path / "settings.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def test_defaults_when_there_is_no_file_and_no_variables(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loaded = load_settings(environ={})
    assert loaded.settings == Settings()
    assert loaded.sources == {}
    assert loaded.settings.database_url.startswith("sqlite:///var/")


def test_shipped_file_lists_every_setting_at_its_default():
    loaded = load_settings(SHIPPED, environ={})
    assert loaded.settings == Settings()
    assert loaded.sources == dict.fromkeys(FIELDS, str(SHIPPED))


def test_file_values_are_converted(settings_file):
    path = settings_file(
        "esl_port: 8022\ns3_object_lock: true\nspool_dir: /srv/spool\nesl_command_timeout: 2.5\n"
    )
    loaded = load_settings(path, environ={})
    s = loaded.settings
    assert (s.esl_port, s.s3_object_lock, s.spool_dir, s.esl_command_timeout) == (
        8022,
        True,
        Path("/srv/spool"),
        2.5,
    )
    assert loaded.sources["esl_port"] == str(path)
    assert "esl_host" not in loaded.sources


def test_yyrec_variables_override_the_file(settings_file):
    path = settings_file("esl_password: from-file\nspool_dir: /from/file\n")
    env = {
        "YYREC_ESL_PASSWORD": "from-env",
        "YYREC_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "YYREC_DATABASE_URL": "sqlite:////tmp/x.sqlite3",
        "YYREC_SPOOL_DIR": "/from/env",
        "YYREC_ESL_PORT": " 8023 ",
    }
    loaded = load_settings(path, environ=env)
    s = loaded.settings
    assert s.esl_password == "from-env"
    assert s.s3_endpoint_url == "http://127.0.0.1:9000"
    assert s.database_url == "sqlite:////tmp/x.sqlite3"
    assert s.spool_dir == Path("/from/env")
    assert s.esl_port == 8023
    assert loaded.sources["spool_dir"] == "YYREC_SPOOL_DIR"


def test_settings_file_named_by_variable(settings_file):
    path = settings_file("node: fs7\n")
    assert load_settings(environ={"YYREC_SETTINGS_FILE": str(path)}).settings.node == "fs7"


def test_aws_variables_give_credentials_region_and_endpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:5000",
    }
    loaded = load_settings(environ=env)
    s = loaded.settings
    assert (s.s3_access_key_id, s.s3_secret_access_key, s.s3_region, s.s3_endpoint_url) == (
        "AKIAEXAMPLE",
        "aws-secret",
        "us-east-1",
        "http://127.0.0.1:5000",
    )
    assert loaded.sources["s3_secret_access_key"] == "AWS_SECRET_ACCESS_KEY"


def test_yyrec_variable_beats_aws_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"AWS_ACCESS_KEY_ID": "from-aws", "YYREC_S3_ACCESS_KEY_ID": "from-yyrec"}
    assert load_settings(environ=env).settings.s3_access_key_id == "from-yyrec"


def test_bad_port_from_a_variable_names_setting_and_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"YYREC_ESL_PORT": "80a"})
    assert str(caught.value) == "setting esl_port (from YYREC_ESL_PORT): '80a' is not a whole number"


def test_bad_port_from_the_file_names_the_file(settings_file):
    path = settings_file("esl_port: 80a\n")
    with pytest.raises(
        SettingsError, match=rf"setting esl_port \(from {path}\): '80a' is not a whole number"
    ):
        load_settings(path, environ={})


def test_port_out_of_range(settings_file):
    with pytest.raises(SettingsError, match=r"esl_port .*70000 is not a TCP port"):
        load_settings(settings_file("esl_port: 70000\n"), environ={})


def test_unknown_log_level(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"YYREC_LOG_LEVEL": "loud"})
    assert "log_level (from YYREC_LOG_LEVEL)" in str(caught.value)
    assert "debug, info, warning, error" in str(caught.value)


def test_unknown_key_in_the_file(settings_file):
    path = settings_file("esl_pasword: x\n")
    with pytest.raises(SettingsError, match=rf"{path}: unknown setting 'esl_pasword'"):
        load_settings(path, environ={})


def test_missing_named_file_is_an_error(tmp_path):
    with pytest.raises(SettingsError, match="settings file not found"):
        load_settings(tmp_path / "absent.yaml", environ={})


def test_retention_other_than_one_year_is_refused(settings_file):
    with pytest.raises(SettingsError, match="retention_years"):
        load_settings(settings_file("retention_years: 2\n"), environ={})


SECRETS_FILE = """\
esl_password: esl-pass-1234
s3_access_key_id: AKIAFILEKEY
s3_secret_access_key: file-secret-5678
database_url: postgresql://rec:db-pass-9012@db.example/rec
"""


@pytest.mark.parametrize("as_json", [False, True])
def test_config_show_masks_secrets(settings_file, capsys, monkeypatch, as_json):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "YYREC_ESL_PASSWORD", "YYREC_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("YYREC_S3_SECRET_ACCESS_KEY", "env-secret-3456")
    path = settings_file(SECRETS_FILE)
    assert main(["--settings", str(path), "config", "show", *(["--json"] if as_json else [])]) == 0
    out = capsys.readouterr().out
    for secret in ("esl-pass-1234", "AKIAFILEKEY", "file-secret-5678", "db-pass-9012", "env-secret-3456"):
        assert secret not in out
    assert "postgresql://rec:****@db.example/rec" in out
    if as_json:
        shown = json.loads(out)
        assert set(shown) == set(FIELDS)
        assert shown["esl_password"] == "********"
    else:
        assert "(YYREC_S3_SECRET_ACCESS_KEY)" in out
        assert len(out.splitlines()) == len(FIELDS)


def test_config_show_reports_a_bad_setting_and_exits_2(settings_file, capsys):
    path = settings_file("esl_port: 80a\n")
    assert main(["--settings", str(path), "config", "show"]) == 2
    assert "esl_port" in capsys.readouterr().err


def test_readme_settings_table_lists_every_setting():
    readme = (SHIPPED.parent.parent / "README.md").read_text(encoding="utf-8")
    missing = [name for name in FIELDS if f"| {name} | YYREC_{name.upper()} |" not in readme]
    assert missing == []


def test_misspelled_environment_variable_is_refused_with_a_suggestion():
    with pytest.raises(SettingsError, match="YYREC_ESL_PASWORD is not a setting; did you mean YYREC_ESL_PASSWORD"):
        load_settings(None, {"YYREC_ESL_PASWORD": "x"})
