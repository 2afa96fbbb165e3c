"""The call index (peewee): one row per conversation, also the upload queue.

SQLite in WAL mode is the embedded default; any peewee database URL works (several
FreeSWITCH nodes can share one PostgreSQL index). The schema is versioned: `open_index`
upgrades an older file in place, one numbered migration at a time.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from peewee import (
    BooleanField,
    CharField,
    DatabaseProxy,
    DateField,
    DateTimeField,
    FloatField,
    ImproperlyConfigured,
    IntegerField,
    Model,
    OperationalError,
    TextField,
)
from playhouse.db_url import connect

from yangyang_rec.settings import mask_url_password

SCHEMA_VERSION = 1

RECORD_STATES = ("recording", "completed", "partial", "failed", "missed")
UPLOAD_STATES = ("pending", "uploading", "uploaded", "failed", "none")

database = DatabaseProxy()


def utcnow() -> dt.datetime:
    """Naive UTC: every time in the index is UTC, so comparisons never mix zones."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class BaseModel(Model):
    class Meta:
        database = database


class SchemaVersion(BaseModel):
    version = IntegerField()
    applied_at = DateTimeField(default=utcnow)


class Call(BaseModel):
    """One conversation. Personal data: caller/callee numbers and names (erased on purge)."""

    call_uuid = CharField(unique=True, max_length=64)
    leg_uuid = CharField(max_length=64)  # the channel the recording runs on
    node = CharField(max_length=64)
    line = CharField(max_length=16, index=True)
    lines_passed = CharField(default="")  # comma-separated lines after transfers
    department = CharField(max_length=32, index=True)
    mode = CharField(max_length=16)
    direction = CharField(max_length=16)  # the office's view: inbound | outbound
    caller_number = CharField(default="")
    caller_name = CharField(default="")
    callee_number = CharField(default="")
    answered_at = DateTimeField(index=True)  # UTC
    recorded_on = DateField()  # KST calendar date of the recording; retention counts from it
    ended_at = DateTimeField(null=True)
    duration_s = FloatField(null=True)
    hangup_cause = CharField(default="")
    notice_played = BooleanField(default=False)
    recording_path = TextField(default="")
    bytes = IntegerField(null=True)
    sha256 = CharField(default="", max_length=64)
    record_state = CharField(default="recording", max_length=16, index=True)
    record_reason = TextField(default="")
    missed_seconds = FloatField(default=0)
    upload_state = CharField(default="pending", max_length=16, index=True)
    upload_attempts = IntegerField(default=0)
    upload_error = TextField(default="")
    upload_claimed_by = CharField(default="", max_length=128)
    upload_claimed_at = DateTimeField(null=True)
    next_attempt_at = DateTimeField(null=True)
    bucket = CharField(default="")
    key = TextField(default="")
    version_id = CharField(default="")
    etag = CharField(default="")
    uploaded_at = DateTimeField(null=True)
    retain_until = DateField(null=True)  # last KST day the recording must still exist
    legal_hold = BooleanField(default=False)
    destroyed_at = DateTimeField(null=True)


class Destruction(BaseModel):
    """The destruction register: what was destroyed, when, under which rule. No personal data."""

    call_uuid = CharField(max_length=64, index=True)
    key = TextField(default="")
    bytes = IntegerField(null=True)
    sha256 = CharField(default="", max_length=64)
    recorded_on = DateField()
    destroyed_at = DateTimeField(default=utcnow)
    rule = TextField()


class Access(BaseModel):
    """Access log of look-ups, playbacks and exports; each row hashes the previous one."""

    at = DateTimeField(default=utcnow)
    who = CharField()
    action = CharField(max_length=32)
    call_uuid = CharField(max_length=64)
    why = TextField()
    prev_hash = CharField(max_length=64)
    row_hash = CharField(max_length=64)


MODELS = [SchemaVersion, Call, Destruction, Access]


def _migrate_to_1(db) -> None:
    db.create_tables([Call, Destruction, Access])


# Migration N brings a database from version N-1 to N. Append, never edit.
MIGRATIONS = {1: _migrate_to_1}


# -- the daemon's per-call writes, with SQL text built once ------------------------------------------
#
# peewee builds each statement from an expression tree on every call: ~0.4 ms for one INSERT or
# SELECT of a Call (40 columns), more than the daemon's whole CPU budget per event, and a call
# makes four of them. The statements are always the same, so their text is built once per set of
# columns and run with the values each field converts (db_value/python_value), as peewee does.

_SQL: dict[tuple[type, str, tuple[str, ...]], str] = {}


def _sql(kind: str, names: tuple[str, ...]) -> str:
    db = database.obj
    sql = _SQL.get((type(db), kind, names))
    if sql is None:
        left, right = db.quote[0], db.quote[1]
        table = f"{left}{Call._meta.table_name}{right}"
        columns = [f"{left}{Call._meta.fields[n].column_name}{right}" for n in names]
        key = f"{left}{Call.call_uuid.column_name}{right}"
        if kind == "insert":
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([db.param] * len(columns))})"
        elif kind == "update":
            sql = f"UPDATE {table} SET {', '.join(f'{c} = {db.param}' for c in columns)} WHERE {key} = {db.param}"
        else:
            sql = f"SELECT {', '.join(columns)} FROM {table} WHERE {key} = {db.param}"
        _SQL[(type(db), kind, names)] = sql
    return sql


def _fields(names) -> list:
    try:
        return [Call._meta.fields[n] for n in names]
    except KeyError as exc:
        raise ValueError(f"Call has no field {exc.args[0]!r}") from None


def insert_call(**values) -> None:
    """`Call.create(**values)` without building a model: the same row, defaults filled the same way.

    Raises peewee's IntegrityError for a call_uuid already indexed.
    """
    _fields(values)
    for field in Call._meta.sorted_fields:
        if field.name not in values and field.default is not None:
            values[field.name] = field.default() if callable(field.default) else field.default
    names = tuple(values)
    params = [f.db_value(v) for f, v in zip(_fields(names), values.values(), strict=True)]
    database.execute_sql(_sql("insert", names), params)


def update_call(call_uuid: str, **values) -> int:
    """`Call.update(**values).where(Call.call_uuid == call_uuid).execute()`; returns rows changed."""
    names = tuple(values)
    params = [f.db_value(v) for f, v in zip(_fields(names), values.values(), strict=True)]
    return database.execute_sql(_sql("update", names), [*params, call_uuid]).rowcount


def select_call(call_uuid: str, *names: str) -> dict | None:
    """The named fields of one call as Python values (as a model would hold them), or None."""
    fields = _fields(names)
    row = database.execute_sql(_sql("select", names), [call_uuid]).fetchone()
    if row is None:
        return None
    return {f.name: f.python_value(v) for f, v in zip(fields, row, strict=True)}


def schema_version(db) -> int:
    if not db.table_exists(SchemaVersion._meta.table_name):
        return 0
    row = SchemaVersion.select().order_by(SchemaVersion.version.desc()).first()
    return row.version if row else 0


class IndexOpenError(RuntimeError):
    """The index cannot be opened; the message says which setting to check."""


def open_index(url: str, create: bool = True):
    """Connect to the index at `url`, upgrade its schema, and bind the models to it.

    `create=False` is for commands that only read: a mistyped path must not become a new,
    empty index that reports "no calls".
    """
    shown = mask_url_password(url)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        path = Path(url.removeprefix("sqlite:///"))
        if not create and not path.exists():
            raise IndexOpenError(f"no index at {path} (setting database_url): check the path, or start the daemon first")
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _open(url)
    except ImproperlyConfigured as exc:
        raise IndexOpenError(
            f"database_url {shown}: {exc} — for PostgreSQL install the driver: pip install 'yangyang-rec[postgresql]'"
        ) from None
    except IndexOpenError:
        raise
    except (ValueError, RuntimeError) as exc:
        raise IndexOpenError(f"database_url {shown}: {exc}; use sqlite:///PATH or postgresql://USER@HOST/DB") from None
    except OperationalError as exc:
        raise IndexOpenError(f"cannot open the index at {shown}: {exc}") from None


def _open(url: str):
    kwargs = {}
    if url.startswith("sqlite"):
        kwargs = {
            "pragmas": {"journal_mode": "wal", "synchronous": "normal", "foreign_keys": 1, "busy_timeout": 10000},
            # One connection shared by all greenlets: gevent switches never happen inside sqlite calls.
            "thread_safe": False,
            "check_same_thread": False,
        }
    db = connect(url, **kwargs)
    database.initialize(db)
    db.connect(reuse_if_open=True)
    with db.atomic():
        db.create_tables([SchemaVersion])
        current = schema_version(db)
        if current > SCHEMA_VERSION:
            raise IndexOpenError(
                f"index {mask_url_password(url)} has schema version {current}, newer than this daemon ({SCHEMA_VERSION}); upgrade the daemon"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](db)
            SchemaVersion.create(version=version)
    return db
