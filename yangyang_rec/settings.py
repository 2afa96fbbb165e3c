"""The one place settings are read: the settings file, then YYREC_* and AWS_* variables.

Settings are read once at start-up into an immutable `Settings` and passed to whatever
needs them; no module reads the environment on its own.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_SETTINGS_FILE = Path("config/yangyang-rec.yaml")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
ADDRESSING_STYLES = ("auto", "path", "virtual")
SECRET_FIELDS = frozenset({"esl_password", "s3_access_key_id", "s3_secret_access_key"})

# Standard AWS variables, read after the file and before YYREC_*.
AWS_VARIABLES = {
    "AWS_ACCESS_KEY_ID": "s3_access_key_id",
    "AWS_SECRET_ACCESS_KEY": "s3_secret_access_key",
    "AWS_DEFAULT_REGION": "s3_region",
    "AWS_REGION": "s3_region",
    "AWS_ENDPOINT_URL_S3": "s3_endpoint_url",
}


class SettingsError(ValueError):
    """A setting has a value the daemon cannot use; the message names it and its source."""


@dataclass(frozen=True)
class Settings:
    # Event socket of the FreeSWITCH on this host.
    esl_host: str = "127.0.0.1"
    esl_port: int = 8021
    esl_password: str = "ClueCon"
    esl_command_timeout: float = 5.0
    # Name of this FreeSWITCH node in the index (several nodes may share one index).
    node: str = "fs1"
    # Files.
    lines_file: Path = Path("config/lines.yaml")
    spool_dir: Path = Path("var/spool")
    notice_file: Path = Path("freeswitch/sounds/notice-ko.wav")  # default notice; lines.yaml may name others
    database_url: str = "sqlite:///var/index.sqlite3"
    # S3-compatible storage.
    s3_endpoint_url: str = ""
    s3_bucket: str = "yangyang-rec"
    s3_region: str = "ap-northeast-2"
    s3_addressing_style: str = "auto"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    s3_object_lock: bool = False
    upload_concurrency: int = 4
    multipart_threshold_mb: int = 16
    # Retention and alarms.
    retention_years: int = 1
    stuck_after_minutes: int = 60
    spool_warn_percent: int = 85
    # Logs.
    log_level: str = "info"
    log_format: str = "auto"

    def public(self) -> dict[str, object]:
        """All settings as plain values, secrets masked, for `config show` and logs."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "********"
            elif f.name == "database_url":
                value = mask_url_password(str(value))
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


@dataclass
class LoadedSettings:
    settings: Settings
    sources: dict[str, str] = field(default_factory=dict)


def mask_url_password(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:****@host/db"""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    if ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:****@{host}"


def _convert(name: str, raw: object, kind: type, source: str) -> object:
    where = f"setting {name} (from {source})"
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{where}: {raw!r} is not true or false")
    if kind is int:
        if isinstance(raw, bool):
            raise SettingsError(f"{where}: {raw!r} is not a whole number")
        try:
            return int(str(raw).strip())
        except ValueError:
            raise SettingsError(f"{where}: {raw!r} is not a whole number") from None
    if kind is float:
        try:
            return float(str(raw).strip())
        except ValueError:
            raise SettingsError(f"{where}: {raw!r} is not a number") from None
    if kind is Path:
        return Path(str(raw))
    return "" if raw is None else str(raw)


def _check(s: Settings, sources: dict[str, str]) -> None:
    def fail(name: str, problem: str) -> None:
        raise SettingsError(f"setting {name} (from {sources.get(name, 'default')}): {problem}")

    if not 1 <= s.esl_port <= 65535:
        fail("esl_port", f"{s.esl_port} is not a TCP port (1-65535)")
    if s.log_level not in LOG_LEVELS:
        fail("log_level", f"{s.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if s.log_format not in LOG_FORMATS:
        fail("log_format", f"{s.log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    if s.s3_addressing_style not in ADDRESSING_STYLES:
        fail("s3_addressing_style", f"{s.s3_addressing_style!r} is not one of {', '.join(ADDRESSING_STYLES)}")
    if s.retention_years != 1:
        fail("retention_years", "recordings are kept exactly one year; only 1 is allowed")
    if s.upload_concurrency < 1:
        fail("upload_concurrency", "must be at least 1")
    if s.multipart_threshold_mb < 5:
        fail("multipart_threshold_mb", "S3 multipart parts are at least 5 MB")
    if s.esl_command_timeout <= 0:
        fail("esl_command_timeout", "must be more than 0 seconds")
    if not 1 <= s.spool_warn_percent <= 100:
        fail("spool_warn_percent", "must be between 1 and 100")
    if not s.s3_bucket:
        fail("s3_bucket", "must not be empty")


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> LoadedSettings:
    """Read the settings file (if any), then AWS_* and YYREC_* variables, and check the result.

    `path` None means YYREC_SETTINGS_FILE or config/yangyang-rec.yaml if it exists.
    """
    env = os.environ if environ is None else environ
    kinds = {f.name: f.type for f in dataclasses.fields(Settings)}
    types = {"str": str, "int": int, "float": float, "bool": bool, "Path": Path}
    values: dict[str, object] = {}
    sources: dict[str, str] = {}

    explicit = path is not None or "YYREC_SETTINGS_FILE" in env
    file = Path(path or env.get("YYREC_SETTINGS_FILE") or DEFAULT_SETTINGS_FILE)
    if file.exists():
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise SettingsError(f"{file}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise SettingsError(f"{file}: expected 'name: value' pairs at the top level")
        for name, raw in data.items():
            if name not in kinds:
                raise SettingsError(f"{file}: unknown setting {name!r}")
            values[name] = _convert(name, raw, types[kinds[name]], str(file))
            sources[name] = str(file)
    elif explicit:
        raise SettingsError(f"{file}: settings file not found")

    for var, name in AWS_VARIABLES.items():
        if env.get(var):
            values[name] = _convert(name, env[var], types[kinds[name]], var)
            sources[name] = var
    known = {"YYREC_" + name.upper() for name in kinds} | {"YYREC_SETTINGS_FILE"}
    for var in sorted(v for v in env if v.startswith("YYREC_") and v not in known):
        close = difflib.get_close_matches(var, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise SettingsError(f"environment variable {var} is not a setting{hint}")
    for name, kind in kinds.items():
        var = "YYREC_" + name.upper()
        if var in env:
            values[name] = _convert(name, env[var], types[kind], var)
            sources[name] = var

    settings = Settings(**values)
    _check(settings, sources)
    return LoadedSettings(settings, sources)
