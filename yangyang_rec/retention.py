"""The one-year rule as calendar arithmetic in Korea time. Pure: no clock, no files, no S3.

The rule: a recording is kept for one calendar year counted in Korea Standard Time from
the day it was recorded, and destroyed without delay after. A call on 2027-03-01 KST is
kept through 2028-03-01 KST and is due for destruction at 2028-03-02 00:00 KST.

29 February: a recording made on 29 February is kept through 1 March of the next year
(the year has no 29 February). Choosing 28 February would destroy it one day short of a
full year; 1 March never destroys early.

All instants here are naive UTC `datetime`s, like every time in the index.

Lifecycle rule days. S3 lifecycle counts days from the object's *upload* (its creation
time), adds the rule's days and rounds up to the next 00:00 UTC. The purge deletes each
recording exactly when due; the lifecycle rule is the safety net for when the purge does not
run, and it must never delete early. The worst case is an object uploaded the very instant
its call was answered, at 00:00 KST (15:00 UTC the day before), in a year that spans a
29 February (366 days to keep). Then

    due       = retain_until 00:00 KST + 1 day  = recorded_on + 366 d, 15:00 UTC
    expiry(N) = ceil_midnight(recorded_on - 1 d, 15:00 UTC + N d) = recorded_on + N d, 00:00 UTC

so N = 367 is the smallest safe value (366 would delete 15 hours early). We use
LIFECYCLE_DAYS = 368: the one extra day keeps the rule safe on stores that do not round up
to midnight (expiry = upload + N days exactly; with 367 that would equal `due` to the
second) and against clock skew between this host and the store. An upload delayed by an
outage only moves the lifecycle expiry later, never earlier; the purge does not depend on
the upload time at all, so delayed objects are still destroyed on the day they are due.
"""

from __future__ import annotations

import datetime as dt

KST = dt.timezone(dt.timedelta(hours=9), "KST")  # Korea has no daylight saving time
KST_OFFSET = dt.timedelta(hours=9)
ONE_DAY = dt.timedelta(days=1)
RULE_TEXT = "1 calendar year (KST) after recording; PIPA"

# Longest span from a recording date to its retain-until date (a year containing 29 February).
MAX_KEEP_DAYS = 366
# The lifecycle rule's Expiration Days; see the module docstring for the derivation.
LIFECYCLE_DAYS = MAX_KEEP_DAYS + 1 + 1


def _naive_utc(instant: dt.datetime) -> dt.datetime:
    if instant.tzinfo is not None:
        instant = instant.astimezone(dt.UTC).replace(tzinfo=None)
    return instant


def kst_date(instant_utc: dt.datetime) -> dt.date:
    """The Korean calendar date of a UTC instant (naive = UTC)."""
    return (_naive_utc(instant_utc) + KST_OFFSET).date()


def kst_midnight_utc(day: dt.date) -> dt.datetime:
    """The UTC instant at which the KST calendar day `day` begins."""
    return dt.datetime(day.year, day.month, day.day) - KST_OFFSET


def retain_until(recorded_on: dt.date) -> dt.date:
    """The last KST day a recording made on `recorded_on` must still exist (29 Feb -> 1 Mar)."""
    try:
        return recorded_on.replace(year=recorded_on.year + 1)
    except ValueError:  # 29 February and the next year has none
        return dt.date(recorded_on.year + 1, 3, 1)


def due_at_utc(recorded_on: dt.date) -> dt.datetime:
    """The UTC instant destruction becomes due: the start of the KST day after retain_until."""
    return kst_midnight_utc(retain_until(recorded_on) + ONE_DAY)


def is_due(recorded_on: dt.date, now_utc: dt.datetime) -> bool:
    return _naive_utc(now_utc) >= due_at_utc(recorded_on)


def latest_due_recorded_on(now_utc: dt.datetime) -> dt.date:
    """The latest recording date that is due at `now_utc`.

    retain_until never decreases as the recording date increases, so the due dates are
    exactly those <= this one: a query can select them with `recorded_on <= cutoff`.
    """
    now = _naive_utc(now_utc)
    day = kst_date(now) - dt.timedelta(days=MAX_KEEP_DAYS + 2)
    while is_due(day + ONE_DAY, now):
        day += ONE_DAY
    return day


def s3_lifecycle_expiry_utc(created_utc: dt.datetime, days: int, round_to_midnight: bool = True) -> dt.datetime:
    """When an S3 lifecycle rule of `days` expires an object created at `created_utc`.

    AWS and MinIO add the days and round up to the next 00:00 UTC; some stores do not
    round (`round_to_midnight=False`).
    """
    at = _naive_utc(created_utc) + dt.timedelta(days=days)
    if not round_to_midnight:
        return at
    midnight = dt.datetime(at.year, at.month, at.day)
    return midnight if midnight == at else midnight + ONE_DAY
