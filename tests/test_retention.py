"""The one-year rule: KST dates, 29 February, lifecycle days, delayed uploads."""

import datetime as dt

import pytest

from yangyang_rec.retention import (
    LIFECYCLE_DAYS,
    due_at_utc,
    is_due,
    kst_date,
    kst_midnight_utc,
    latest_due_recorded_on,
    retain_until,
    s3_lifecycle_expiry_utc,
)

D = dt.date
T = dt.datetime


@pytest.mark.parametrize(
    "utc, expected",
    [
        (T(2027, 2, 28, 14, 59, 59), D(2027, 2, 28)),
        (T(2027, 2, 28, 15, 0, 0), D(2027, 3, 1)),  # 00:00 KST
        (T(2027, 12, 31, 15, 0), D(2028, 1, 1)),
        (T(2028, 2, 28, 15, 0), D(2028, 2, 29)),
        (T(2027, 3, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=9))), D(2027, 3, 1)),  # aware input
    ],
)
def test_kst_date(utc, expected):
    assert kst_date(utc) == expected


@pytest.mark.parametrize(
    "recorded_on, kept_through",
    [
        (D(2027, 3, 1), D(2028, 3, 1)),  # the example in DESIGN §5
        (D(2028, 2, 28), D(2029, 2, 28)),
        (D(2028, 2, 29), D(2029, 3, 1)),  # never early: 1 March, not 28 February
        (D(2028, 3, 1), D(2029, 3, 1)),
        (D(2027, 12, 31), D(2028, 12, 31)),
        (D(2031, 2, 28), D(2032, 2, 28)),
    ],
)
def test_retain_until(recorded_on, kept_through):
    assert retain_until(recorded_on) == kept_through


@pytest.mark.parametrize(
    "recorded_on, due_utc",
    [
        (D(2027, 3, 1), T(2028, 3, 1, 15, 0)),  # = 2028-03-02 00:00 KST
        (D(2028, 2, 29), T(2029, 3, 1, 15, 0)),
        (D(2027, 12, 31), T(2028, 12, 31, 15, 0)),
    ],
)
def test_due_at_utc(recorded_on, due_utc):
    assert due_at_utc(recorded_on) == due_utc
    assert not is_due(recorded_on, due_utc - dt.timedelta(seconds=1))
    assert is_due(recorded_on, due_utc)


def every_day(first_year, last_year):
    day = D(first_year, 1, 1)
    while day.year <= last_year:
        yield day
        day += dt.timedelta(days=1)


def test_every_day_is_kept_a_full_calendar_year_and_no_more():
    for day in every_day(2026, 2033):
        until = retain_until(day)
        assert until > day and (until.year, until.month) >= (day.year + 1, day.month)
        assert 365 <= (until - day).days <= 366
        # The last instant of the recording day is still kept on the same calendar day next year.
        last_instant = kst_midnight_utc(day + dt.timedelta(days=1)) - dt.timedelta(seconds=1)
        assert kst_date(due_at_utc(day) - dt.timedelta(seconds=1)) == until
        assert due_at_utc(day) > last_instant


def test_latest_due_recorded_on_matches_brute_force():
    for now_day in every_day(2028, 2029):
        for hour in (0, 14, 15, 23):
            now = T(now_day.year, now_day.month, now_day.day, hour, 30)
            cutoff = latest_due_recorded_on(now)
            assert is_due(cutoff, now)
            assert not is_due(cutoff + dt.timedelta(days=1), now)
            # retain_until never decreases, so every earlier date is due too.
            assert is_due(cutoff - dt.timedelta(days=3), now)


def _worst_case_instants(day):
    """Answered (and uploaded at once) at the first and last second of the KST day."""
    start = kst_midnight_utc(day)
    return (start, start + dt.timedelta(hours=9), start + dt.timedelta(days=1) - dt.timedelta(seconds=1))


@pytest.mark.parametrize("round_to_midnight", [True, False])
def test_lifecycle_days_never_delete_early(round_to_midnight):
    """Every day of 2026..2033 (incl. 2028-02-29, 2032-02-29), uploaded the instant of the call."""
    days_checked = 0
    for day in every_day(2026, 2033):
        for uploaded in _worst_case_instants(day):
            expiry = s3_lifecycle_expiry_utc(uploaded, LIFECYCLE_DAYS, round_to_midnight)
            assert expiry >= due_at_utc(day), (day, uploaded, expiry)
        days_checked += 1
    assert days_checked == 8 * 365 + 2


def test_367_is_the_least_safe_value_on_rounding_stores():
    def safe(days):
        return all(
            s3_lifecycle_expiry_utc(up, days) >= due_at_utc(day)
            for day in every_day(2027, 2029)
            for up in _worst_case_instants(day)
        )

    assert not safe(366)  # would delete recordings of leap years 15 hours early
    assert safe(367)
    assert LIFECYCLE_DAYS == 368  # one day of margin for stores that do not round up, and clock skew


@pytest.mark.parametrize("delay_days", [0, 1, 3, 30, 200])
def test_delayed_upload_only_makes_lifecycle_later(delay_days):
    day = D(2028, 2, 29)
    answered = kst_midnight_utc(day)
    on_time = s3_lifecycle_expiry_utc(answered, LIFECYCLE_DAYS)
    late = s3_lifecycle_expiry_utc(answered + dt.timedelta(days=delay_days), LIFECYCLE_DAYS)
    assert late >= on_time >= due_at_utc(day)
    # The purge decides from the recording date only: the upload delay does not move `due`.
    assert due_at_utc(day) == T(2029, 3, 1, 15, 0)


def test_s3_rounding_model():
    assert s3_lifecycle_expiry_utc(T(2027, 1, 1, 10, 0), 1) == T(2027, 1, 3)
    assert s3_lifecycle_expiry_utc(T(2027, 1, 1, 0, 0), 1) == T(2027, 1, 2)
    assert s3_lifecycle_expiry_utc(T(2027, 1, 1, 10, 0), 1, round_to_midnight=False) == T(2027, 1, 2, 10, 0)
