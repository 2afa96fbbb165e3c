"""Mistakes a user makes on the command line get one clear line and exit 2, never a traceback."""

import pytest

from yangyang_rec.cli import main


@pytest.fixture(autouse=True)
def no_settings_file(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)


def run(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def test_calls_with_a_mistyped_index_path_says_so_and_creates_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("YYREC_DATABASE_URL", f"sqlite:///{tmp_path}/nope/index.sqlite3")
    code, err = run(capsys, "calls")
    assert code == 2 and "no index at" in err and "database_url" in err
    assert not (tmp_path / "nope").exists()


def test_postgresql_without_its_driver_names_the_extra_and_hides_the_password(monkeypatch, capsys):
    pytest.importorskip("peewee")
    try:
        import psycopg2  # noqa: F401

        pytest.skip("psycopg2 is installed here; the missing-driver message cannot show")
    except ImportError:
        pass
    monkeypatch.setenv("YYREC_DATABASE_URL", "postgresql://rec:s3cret@127.0.0.1:1/rec")
    code, err = run(capsys, "calls")
    assert code == 2 and "yangyang-rec[postgresql]" in err
    assert "s3cret" not in err


def test_unsupported_database_is_refused_clearly(monkeypatch, capsys):
    monkeypatch.setenv("YYREC_DATABASE_URL", "oracle://x/y")
    code, err = run(capsys, "calls")
    assert code == 2 and "database_url" in err


def test_lines_check_on_a_folder_is_a_message_not_a_traceback(tmp_path, capsys):
    code, err = run(capsys, "lines", "check", str(tmp_path))
    assert code in (1, 2) and "Traceback" not in err and str(tmp_path) in err


def test_purge_with_an_impossible_register_path_destroys_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("YYREC_DATABASE_URL", f"sqlite:///{tmp_path}/index.sqlite3")
    code, err = run(capsys, "purge", "--register-csv", str(tmp_path / "no" / "such" / "register.csv"))
    assert code == 2 and "nothing was purged" in err
