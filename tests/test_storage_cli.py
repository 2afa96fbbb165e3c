"""The storage commands as users run them: separate processes, a settings file, exit codes."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.call_rows import make_call, versions_of
from yangyang_rec.bucket import make_client
from yangyang_rec.index import Call, open_index
from yangyang_rec.retention import due_at_utc


def write_settings(settings, path: Path) -> Path:
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    path.write_text(yaml.safe_dump({k: str(v) if isinstance(v, Path) else v for k, v in values.items()}))
    return path


def cli(settings_file, *args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "yangyang_rec", "--settings", str(settings_file), *args],
        capture_output=True, text=True, timeout=timeout,
    )


def test_lifecycle_ship_audit_purge_from_the_command_line(s3_settings, tmp_path):
    settings_file = write_settings(s3_settings, tmp_path / "settings.yaml")
    shown = cli(settings_file, "lifecycle")
    assert shown.returncode == 1 and "does not exist" in shown.stdout + shown.stderr
    applied = cli(settings_file, "lifecycle", "--apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "368 days" in applied.stdout
    assert cli(settings_file, "lifecycle").returncode == 0

    open_index(s3_settings.database_url)
    rows = [make_call(s3_settings, size=20_000) for _ in range(40)]

    # Two daemons' worth of shippers on one index, at the same time, in two processes.
    procs = [subprocess.Popen([sys.executable, "-m", "yangyang_rec", "--settings", str(settings_file), "ship", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(o["uploaded"] for o in outs) == 40
    assert Call.select().where(Call.upload_state != "uploaded").count() == 0
    client = make_client(s3_settings)
    for row in rows:
        key = Call.get_by_id(row.id).key
        assert len(versions_of(client, s3_settings.s3_bucket, key)) == 1

    report_file = tmp_path / "audit.json"
    clean = cli(settings_file, "audit", "--json", str(report_file))
    assert clean.returncode == 0, clean.stdout
    assert json.loads(report_file.read_text())["clean"] is True

    client.put_object(Bucket=s3_settings.s3_bucket, Key="recordings/x/2027/01/01/stray.wav", Body=b"x")
    dirty = cli(settings_file, "audit", "--json", str(report_file))
    assert dirty.returncode == 1 and "orphan" in dirty.stdout
    assert json.loads(report_file.read_text())["counts"]["orphan"] == 1

    dry = cli(settings_file, "purge", "--dry-run")
    assert dry.returncode == 0 and "would destroy: 0" in dry.stdout
    register = tmp_path / "register.csv"
    exported = cli(settings_file, "register", "export", "--csv", str(register))
    assert exported.returncode == 0 and register.read_text().startswith("call_uuid,key,bytes,sha256")
    assert due_at_utc(rows[0].recorded_on)  # the purge of due rows is covered in test_purge.py


def test_ship_says_what_to_do_when_the_bucket_is_down(tmp_path):
    from tests.s3_fixtures import free_port, settings_for

    settings = settings_for(f"http://127.0.0.1:{free_port()}", tmp_path)
    settings_file = write_settings(settings, tmp_path / "settings.yaml")
    open_index(settings.database_url)
    make_call(settings)
    out = cli(settings_file, "ship")
    assert out.returncode == 1
    assert "cannot be reached" in out.stderr and "stay queued" in out.stderr
    assert "Traceback" not in out.stderr
