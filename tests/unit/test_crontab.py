"""crontab: parsing, next_run tables with a fake "now", time zones and DST."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from celeriac.schedules import crontab, schedstate

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # 30-minute DST shift
SANTIAGO = ZoneInfo("America/Santiago")  # shifts at midnight


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    """Return a UTC datetime."""
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def local(
    zone: tzinfo, year: int, month: int, day: int, hour: int, minute: int, fold: int = 0
) -> datetime:
    """Return a wall-clock datetime in ``zone``, converted to UTC."""
    return datetime(year, month, day, hour, minute, tzinfo=zone, fold=fold).astimezone(UTC)


# -- parsing ---------------------------------------------------------------------------

PARSE_CASES: list[tuple[str, Any, set[int]]] = [
    ("minute", "*/15", {0, 15, 30, 45}),
    ("minute", "0,15,30", {0, 15, 30}),
    ("minute", " 0 , 30 ", {0, 30}),
    ("minute", "1-10/2", {1, 3, 5, 7, 9}),
    ("minute", 7, {7}),
    ("minute", {0, 30}, {0, 30}),
    ("minute", [5, "10-12"], {5, 10, 11, 12}),
    ("hour", "1-5", {1, 2, 3, 4, 5}),
    ("hour", "22-2", {22, 23, 0, 1, 2}),
    ("hour", "*/6", {0, 6, 12, 18}),
    ("hour", "*", set(range(24))),
    ("day_of_week", "mon-fri", {1, 2, 3, 4, 5}),
    ("day_of_week", "sun", {0}),
    ("day_of_week", "Sunday", {0}),
    ("day_of_week", 0, {0}),
    ("day_of_week", 7, {0}),
    ("day_of_week", "7", {0}),
    ("day_of_week", "mon,wed,fri", {1, 3, 5}),
    ("day_of_week", "fri-mon", {5, 6, 0, 1}),
    ("day_of_week", "5-7", {5, 6, 0}),
    ("day_of_week", "*/2", {0, 2, 4, 6}),
    ("day_of_week", [1, "wed"], {1, 3}),
    ("day_of_month", "*", set(range(1, 32))),
    ("day_of_month", "1-7,15-21", set(range(1, 8)) | set(range(15, 22))),
    ("day_of_month", "*/10", {1, 11, 21, 31}),
    ("month_of_year", "jan", {1}),
    ("month_of_year", "January", {1}),
    ("month_of_year", "jan-mar", {1, 2, 3}),
    ("month_of_year", "DEC", {12}),
    ("month_of_year", "*/3", {1, 4, 7, 10}),
    ("month_of_year", "2-12/2", {2, 4, 6, 8, 10, 12}),
]


@pytest.mark.parametrize(("field", "spec", "expected"), PARSE_CASES)
def test_fields_parse_to_celery_style_sets(field: str, spec: Any, expected: set[int]) -> None:
    cron = crontab(**{field: spec})
    assert getattr(cron, field) == expected


INVALID_CASES: list[tuple[str, Any, str]] = [
    ("minute", 61, "61"),
    ("minute", "61", "61"),
    ("minute", -1, "-1"),
    ("minute", "*/0", "*/0"),
    ("minute", "5/15", "5/15"),
    ("minute", "", "''"),
    ("minute", "1,,2", "1,,2"),
    ("minute", "1-", "1-"),
    ("minute", "*/x", "*/x"),
    ("minute", "mon", "mon"),
    ("minute", [], "[]"),
    ("hour", 24, "24"),
    ("hour", "0-24", "0-24"),
    ("day_of_week", "funday", "funday"),
    ("day_of_week", 8, "8"),
    ("day_of_month", 0, "0"),
    ("day_of_month", 32, "32"),
    ("month_of_year", 13, "13"),
    ("month_of_year", "smarch", "smarch"),
    ("month_of_year", 0, "0"),
]


@pytest.mark.parametrize(("field", "spec", "shown"), INVALID_CASES)
def test_invalid_values_raise_value_error_naming_field_and_value(
    field: str, spec: Any, shown: str
) -> None:
    with pytest.raises(ValueError) as excinfo:
        crontab(**{field: spec})
    message = str(excinfo.value)
    assert field in message
    assert shown in message


def test_day_that_never_occurs_names_both_fields() -> None:
    with pytest.raises(ValueError, match=r"day_of_month=31.*month_of_year='feb'"):
        crontab(day_of_month=31, month_of_year="feb")
    with pytest.raises(ValueError, match="day_of_month"):
        crontab(day_of_month=30, month_of_year=2)
    assert crontab(day_of_month=29, month_of_year=2).day_of_month == {29}


def test_wrong_types_and_unknown_zone_are_rejected() -> None:
    with pytest.raises(TypeError, match="minute"):
        crontab(minute=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="minute"):
        crontab(minute=True)
    with pytest.raises(ValueError, match="Mars/Olympus"):
        crontab(tz="Mars/Olympus")


def test_from_string_reads_cron_order() -> None:
    cron = crontab.from_string("30 7 * * 1")
    assert cron == crontab(hour=7, minute=30, day_of_week=1)
    assert cron.minute == {30}
    assert cron.day_of_week == {1}
    assert crontab.from_string("0 0 1 jan *").month_of_year == {1}
    with pytest.raises(ValueError, match="5 fields"):
        crontab.from_string("30 7 * *")


def test_key_and_repr_are_canonical() -> None:
    seed = crontab(hour=7, minute=30, day_of_week=1)
    assert seed.key() == "crontab:30 7 * * 1"
    assert crontab("30", "7", "mon").key() == seed.key()
    assert crontab(minute="*/15").key() == "crontab:0,15,30,45 * * * *"
    assert crontab(hour=7, minute=30, day_of_week="mon-fri").key() == "crontab:30 7 * * 1-5"
    assert crontab(day_of_week="sat,sun", minute=0).key() == "crontab:0 * * * 0,6"
    assert crontab(minute=0, tz="Europe/Berlin").key() == "crontab:0 * * * *@Europe/Berlin"
    assert "30 7 * * 1" in repr(seed)


# -- next_run tables (UTC) -------------------------------------------------------------

EVERY_15 = crontab(minute="*/15")
WEEKDAYS_0730 = crontab(hour=7, minute=30, day_of_week="mon-fri")
DAY_31 = crontab(minute=0, hour=0, day_of_month=31)
FEB_29 = crontab(minute=0, hour=0, day_of_month=29, month_of_year=2)
DAILY_MIDNIGHT = crontab(minute=0, hour=0)
DAILY_2359 = crontab(minute=59, hour=23)
FIRST_OF_MONTH = crontab(minute=0, hour=0, day_of_month=1)
DAY_30 = crontab(minute=0, hour=12, day_of_month=30)
NEW_YEARS_EVE = crontab(minute=59, hour=23, day_of_month=31, month_of_year="dec")
MONDAY = crontab(minute=0, hour=0, day_of_week=1)
SEED = crontab(hour=7, minute=30, day_of_week=1)  # seed 003: every Monday at 07:30
SUNDAY = crontab(minute=0, hour=0, day_of_week=0)
FIRST_MONDAY = crontab(minute=0, hour=9, day_of_month="1-7", day_of_week="mon")
QUARTERLY = crontab(minute=0, hour=6, day_of_month=1, month_of_year="jan,apr,jul,oct")

# 2025-06-02 is a Monday; 2025-06-06 a Friday; 2025-12-29 a Monday.
NEXT_RUN_TABLE: list[tuple[str, crontab, datetime, datetime]] = [
    ("15min on the hour", EVERY_15, utc(2025, 6, 2, 10, 0), utc(2025, 6, 2, 10, 15)),
    ("15min mid-slot", EVERY_15, utc(2025, 6, 2, 10, 7, 31), utc(2025, 6, 2, 10, 15)),
    (
        "15min a microsecond early",
        EVERY_15,
        utc(2025, 6, 2, 10, 14, 59, 999999),
        utc(2025, 6, 2, 10, 15),
    ),
    ("15min next hour", EVERY_15, utc(2025, 6, 2, 10, 45), utc(2025, 6, 2, 11, 0)),
    ("15min year end", EVERY_15, utc(2025, 12, 31, 23, 45), utc(2026, 1, 1, 0, 0)),
    ("weekdays fri->mon", WEEKDAYS_0730, utc(2025, 6, 6, 7, 30), utc(2025, 6, 9, 7, 30)),
    ("weekdays before", WEEKDAYS_0730, utc(2025, 6, 2, 7, 29), utc(2025, 6, 2, 7, 30)),
    ("weekdays mon->tue", WEEKDAYS_0730, utc(2025, 6, 2, 7, 30), utc(2025, 6, 3, 7, 30)),
    ("weekdays saturday", WEEKDAYS_0730, utc(2025, 6, 7, 12, 0), utc(2025, 6, 9, 7, 30)),
    ("weekdays late thu", WEEKDAYS_0730, utc(2025, 6, 5, 23, 59), utc(2025, 6, 6, 7, 30)),
    ("31st skips feb", DAY_31, utc(2025, 1, 31), utc(2025, 3, 31)),
    ("31st skips apr", DAY_31, utc(2025, 3, 31), utc(2025, 5, 31)),
    ("31st skips jun", DAY_31, utc(2025, 5, 31), utc(2025, 7, 31)),
    ("31st jul->aug", DAY_31, utc(2025, 7, 31), utc(2025, 8, 31)),
    ("31st skips sep", DAY_31, utc(2025, 8, 31), utc(2025, 10, 31)),
    ("31st skips nov", DAY_31, utc(2025, 10, 31), utc(2025, 12, 31)),
    ("31st year end", DAY_31, utc(2025, 12, 31), utc(2026, 1, 31)),
    ("31st from mid-april", DAY_31, utc(2025, 4, 15), utc(2025, 5, 31)),
    ("feb 29 from 2025", FEB_29, utc(2025, 1, 1), utc(2028, 2, 29)),
    ("feb 29 after a run", FEB_29, utc(2024, 2, 29), utc(2028, 2, 29)),
    ("feb 29 next day", FEB_29, utc(2024, 2, 28), utc(2024, 2, 29)),
    ("feb 29 skips 2100", FEB_29, utc(2096, 2, 29), utc(2104, 2, 29)),
    ("daily year end", DAILY_MIDNIGHT, utc(2025, 12, 31), utc(2026, 1, 1)),
    ("daily feb end", DAILY_MIDNIGHT, utc(2025, 2, 28), utc(2025, 3, 1)),
    ("daily leap feb", DAILY_MIDNIGHT, utc(2024, 2, 28), utc(2024, 2, 29)),
    ("23:59 month end", DAILY_2359, utc(2025, 4, 30, 23, 59), utc(2025, 5, 1, 23, 59)),
    ("23:59 year end", DAILY_2359, utc(2025, 12, 31, 23, 59), utc(2026, 1, 1, 23, 59)),
    ("1st of month", FIRST_OF_MONTH, utc(2025, 12, 15), utc(2026, 1, 1)),
    ("30th skips feb", DAY_30, utc(2025, 1, 30, 12), utc(2025, 3, 30, 12)),
    ("new year's eve", NEW_YEARS_EVE, utc(2025, 12, 31, 23, 59), utc(2026, 12, 31, 23, 59)),
    ("quarterly", QUARTERLY, utc(2025, 4, 1, 6), utc(2025, 7, 1, 6)),
    ("quarterly year end", QUARTERLY, utc(2025, 10, 1, 6), utc(2026, 1, 1, 6)),
    ("monday from sunday", MONDAY, utc(2025, 6, 1, 12), utc(2025, 6, 2)),
    ("monday after run", MONDAY, utc(2025, 6, 2), utc(2025, 6, 9)),
    ("seed after run", SEED, utc(2025, 6, 2, 7, 30), utc(2025, 6, 9, 7, 30)),
    ("seed from sunday", SEED, utc(2025, 6, 1, 9, 0), utc(2025, 6, 2, 7, 30)),
    ("seed just before", SEED, utc(2025, 6, 2, 7, 29, 59), utc(2025, 6, 2, 7, 30)),
    ("seed just after", SEED, utc(2025, 6, 2, 7, 31), utc(2025, 6, 9, 7, 30)),
    ("seed year end", SEED, utc(2025, 12, 29, 7, 30), utc(2026, 1, 5, 7, 30)),
    ("sunday", SUNDAY, utc(2025, 6, 7), utc(2025, 6, 8)),
    # Celery ANDs the day fields: the first Monday, not "1st-7th or any Monday".
    ("first monday", FIRST_MONDAY, utc(2025, 6, 1), utc(2025, 6, 2, 9)),
    ("first monday next month", FIRST_MONDAY, utc(2025, 6, 2, 9), utc(2025, 7, 7, 9)),
]


@pytest.mark.parametrize(
    ("cron", "last_run", "expected"),
    [case[1:] for case in NEXT_RUN_TABLE],
    ids=[case[0] for case in NEXT_RUN_TABLE],
)
def test_next_run_table(cron: crontab, last_run: datetime, expected: datetime) -> None:
    assert cron.next_run(last_run, now=last_run) == expected
    # "now" does not move the answer: after downtime the missed run is due (in the past).
    assert cron.next_run(last_run, now=expected + timedelta(days=400)) == expected


def test_sunday_is_zero_or_seven_or_name() -> None:
    assert crontab(day_of_week=7) == crontab(day_of_week=0) == crontab(day_of_week="sun")
    assert crontab(day_of_week=7, minute=0, hour=0).next_run(utc(2025, 6, 7), utc(2025, 6, 7)) == (
        utc(2025, 6, 8)
    )


def test_results_are_utc_and_naive_input_is_rejected() -> None:
    result = EVERY_15.next_run(local(BERLIN, 2025, 6, 2, 12, 1), utc(2025, 6, 2))
    assert result.tzinfo is UTC
    with pytest.raises(ValueError, match="last_run"):
        EVERY_15.next_run(datetime(2025, 6, 2), utc(2025, 6, 2))
    with pytest.raises(ValueError, match="now"):
        EVERY_15.next_run(None, datetime(2025, 6, 2))


def test_never_ran_means_first_match_at_or_after_now() -> None:
    assert SEED.next_run(None, utc(2025, 6, 2, 7, 30)) == utc(2025, 6, 2, 7, 30)
    assert SEED.next_run(None, utc(2025, 6, 2, 7, 30, 1)) == utc(2025, 6, 9, 7, 30)
    assert EVERY_15.next_run(None, utc(2025, 6, 2, 10, 1)) == utc(2025, 6, 2, 10, 15)


def test_first_run_is_celery_beat_behaviour() -> None:
    # Celery's beat stores the time it first saw an entry as last_run_at, so an entry
    # created exactly on a matching minute does not fire at once.
    assert SEED.first_run(utc(2025, 6, 2, 7, 30)) == utc(2025, 6, 9, 7, 30)
    assert SEED.first_run(utc(2025, 6, 2, 7, 0)) == utc(2025, 6, 2, 7, 30)


def test_is_due_with_fake_now_after_downtime_fires_once() -> None:
    now = utc(2025, 6, 20, 12, 0)  # beat was down for weeks: several Mondays missed
    cron = crontab(hour=7, minute=30, day_of_week=1, nowfun=lambda: now)
    due, next_check = cron.is_due(utc(2025, 6, 2, 7, 30))
    assert due is True
    # the next check is the next Monday after now, not the next missed one
    assert next_check == (utc(2025, 6, 23, 7, 30) - now).total_seconds()
    assert cron.is_due(now) == schedstate(False, next_check)
    assert cron.remaining_estimate(utc(2025, 6, 2, 7, 30)) == utc(2025, 6, 9, 7, 30) - now


def test_is_due_before_the_time() -> None:
    now = utc(2025, 6, 2, 7, 0)
    cron = crontab(hour=7, minute=30, day_of_week=1, nowfun=lambda: now)
    assert cron.is_due(utc(2025, 5, 26, 7, 30)) == schedstate(False, 1800.0)


# -- time zones ------------------------------------------------------------------------

ZONE_TABLE: list[tuple[str, crontab, datetime, datetime]] = [
    (
        "berlin 07:30 summer",
        crontab(hour=7, minute=30, tz="Europe/Berlin"),
        utc(2025, 6, 2, 5, 30),
        utc(2025, 6, 3, 5, 30),
    ),
    (
        "berlin 07:30 winter",
        crontab(hour=7, minute=30, tz=BERLIN),
        utc(2025, 1, 6, 6, 30),
        utc(2025, 1, 7, 6, 30),
    ),
    (
        "new york monday 07:30 from UTC monday",
        crontab(hour=7, minute=30, day_of_week=1, tz=NY),
        utc(2025, 6, 2, 1, 0),  # still Sunday 21:00 in New York
        local(NY, 2025, 6, 2, 7, 30),
    ),
    (
        "berlin weekdays across spring change",
        crontab(hour=7, minute=30, day_of_week="mon-fri", tz=BERLIN),
        local(BERLIN, 2025, 3, 28, 7, 30),  # Friday, CET
        local(BERLIN, 2025, 3, 31, 7, 30),  # Monday, CEST
    ),
]


@pytest.mark.parametrize(
    ("cron", "last_run", "expected"),
    [case[1:] for case in ZONE_TABLE],
    ids=[case[0] for case in ZONE_TABLE],
)
def test_wall_clock_in_zone(cron: crontab, last_run: datetime, expected: datetime) -> None:
    assert cron.next_run(last_run, last_run) == expected


def test_with_default_tz_binds_the_app_zone_only_when_none_is_set() -> None:
    bound = crontab(hour=7, minute=30).with_default_tz("Europe/Berlin")
    assert bound.next_run(utc(2025, 6, 2, 5, 30), utc(2025, 6, 2)) == utc(2025, 6, 3, 5, 30)
    assert bound.key() == "crontab:30 7 * * *@Europe/Berlin"
    own = crontab(hour=7, minute=30, tz=NY)
    assert own.with_default_tz("Europe/Berlin") is own
    assert crontab(hour=7).with_default_tz(None).tz is None


# -- DST -------------------------------------------------------------------------------

DST_TABLE: list[tuple[str, crontab, datetime, datetime]] = [
    # New York springs forward 2025-03-09 02:00 EST -> 03:00 EDT (07:00Z).
    (
        "NY spring: nonexistent 02:30 fires at 03:00 EDT",
        crontab(hour=2, minute=30, tz=NY),
        local(NY, 2025, 3, 8, 2, 30),
        local(NY, 2025, 3, 9, 3, 0),
    ),
    (
        "NY spring: then back to 02:30 the next day",
        crontab(hour=2, minute=30, tz=NY),
        local(NY, 2025, 3, 9, 3, 0),
        local(NY, 2025, 3, 10, 2, 30),
    ),
    (
        "NY spring: 01:59 EST -> the jump",
        crontab(hour=2, minute="0,30", tz=NY),
        local(NY, 2025, 3, 9, 1, 59),
        utc(2025, 3, 9, 7, 0),
    ),
    (
        "NY spring: skipped 02:00 and 02:30 collapse into one run",
        crontab(hour=2, minute="0,30", tz=NY),
        utc(2025, 3, 9, 7, 0),
        local(NY, 2025, 3, 10, 2, 0),
    ),
    (
        "NY spring: every 15 min skips the missing hour",
        crontab(minute="*/15", tz=NY),
        local(NY, 2025, 3, 9, 1, 45),
        local(NY, 2025, 3, 9, 3, 0),
    ),
    (
        "NY spring: hourly, one real hour later",
        crontab(minute=0, tz=NY),
        local(NY, 2025, 3, 9, 1, 0),
        local(NY, 2025, 3, 9, 3, 0),
    ),
    # New York falls back 2025-11-02 02:00 EDT -> 01:00 EST (06:00Z).
    (
        "NY fall: repeated 01:30 fires at its first occurrence",
        crontab(hour=1, minute=30, tz=NY),
        local(NY, 2025, 11, 1, 1, 30),
        local(NY, 2025, 11, 2, 1, 30, fold=0),
    ),
    (
        "NY fall: and not at the second",
        crontab(hour=1, minute=30, tz=NY),
        local(NY, 2025, 11, 2, 1, 30, fold=0),
        local(NY, 2025, 11, 3, 1, 30),
    ),
    (
        "NY fall: from inside the second pass",
        crontab(hour=1, minute=30, tz=NY),
        local(NY, 2025, 11, 2, 1, 10, fold=1),
        local(NY, 2025, 11, 3, 1, 30),
    ),
    (
        "NY fall: hourly 01:00 EDT -> 01:00 EST",
        crontab(minute=0, tz=NY),
        local(NY, 2025, 11, 2, 1, 0, fold=0),
        local(NY, 2025, 11, 2, 1, 0, fold=1),
    ),
    (
        "NY fall: hourly 01:00 EST -> 02:00 EST",
        crontab(minute=0, tz=NY),
        local(NY, 2025, 11, 2, 1, 0, fold=1),
        local(NY, 2025, 11, 2, 2, 0),
    ),
    (
        "NY fall: hourly from late first pass reaches the repeat",
        crontab(minute=0, tz=NY),
        local(NY, 2025, 11, 2, 1, 50, fold=0),
        local(NY, 2025, 11, 2, 1, 0, fold=1),
    ),
    # Berlin springs forward 2025-03-30 02:00 CET -> 03:00 CEST (01:00Z).
    (
        "Berlin spring: nonexistent 02:30 fires at 03:00 CEST",
        crontab(hour=2, minute=30, tz=BERLIN),
        local(BERLIN, 2025, 3, 29, 2, 30),
        utc(2025, 3, 30, 1, 0),
    ),
    (
        "Berlin spring: hourly :15, one real hour later",
        crontab(minute=15, tz=BERLIN),
        local(BERLIN, 2025, 3, 30, 1, 15),
        local(BERLIN, 2025, 3, 30, 3, 15),
    ),
    # Berlin falls back 2025-10-26 03:00 CEST -> 02:00 CET (01:00Z).
    (
        "Berlin fall: repeated 02:30 fires at its first occurrence",
        crontab(hour=2, minute=30, tz=BERLIN),
        local(BERLIN, 2025, 10, 25, 2, 30),
        utc(2025, 10, 26, 0, 30),
    ),
    (
        "Berlin fall: and next on the following day",
        crontab(hour=2, minute=30, tz=BERLIN),
        utc(2025, 10, 26, 0, 30),
        local(BERLIN, 2025, 10, 27, 2, 30),
    ),
    (
        "Berlin fall: hourly :15 through the repeated hour",
        crontab(minute=15, tz=BERLIN),
        utc(2025, 10, 26, 0, 15),
        utc(2025, 10, 26, 1, 15),
    ),
]


@pytest.mark.parametrize(
    ("cron", "last_run", "expected"),
    [case[1:] for case in DST_TABLE],
    ids=[case[0] for case in DST_TABLE],
)
def test_dst_table(cron: crontab, last_run: datetime, expected: datetime) -> None:
    assert cron.next_run(last_run, last_run) == expected


def _fires(cron: crontab, start: datetime, end: datetime) -> list[datetime]:
    """Chain next_run from ``start`` (as last run) and return every fire before ``end``."""
    fires: list[datetime] = []
    moment = cron.next_run(start, start)
    while moment < end:
        fires.append(moment)
        moment = cron.next_run(moment, moment)
    return fires


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        (NY, utc(2025, 3, 9, 0)),
        (NY, utc(2025, 11, 2, 0)),
        (BERLIN, utc(2025, 3, 29, 20)),
        (BERLIN, utc(2025, 10, 25, 20)),
        (LORD_HOWE, utc(2025, 4, 5, 10)),
        (LORD_HOWE, utc(2025, 10, 4, 10)),
    ],
)
@pytest.mark.parametrize("minute", [0, 30, "*/15"])
def test_hourly_crontabs_fire_every_real_hour_across_dst(
    zone: ZoneInfo, start: datetime, minute: int | str
) -> None:
    cron = crontab(minute=minute, tz=zone)
    fires = _fires(cron, start, start + timedelta(hours=12))
    assert fires[0].astimezone(zone).utcoffset() != fires[-1].astimezone(zone).utcoffset()
    gaps = {later - earlier for earlier, later in itertools.pairwise(fires)}
    per_hour = len(cron.minute)
    if per_hour == 1:
        # Lord Howe shifts by 30 minutes, so minute=0/30 drift by that once; never a
        # double (gap 0) and never a skipped real hour (gap 2h).
        assert gaps <= {timedelta(hours=1), timedelta(minutes=30), timedelta(minutes=90)}
        assert len(fires) in (11, 12, 13)
    else:
        assert gaps <= {timedelta(minutes=15), timedelta(minutes=45), timedelta(minutes=30)}
    assert len(set(fires)) == len(fires)


def _reference_fires(
    cron: crontab, zone: ZoneInfo, start: datetime, end: datetime
) -> list[datetime]:
    """Every fire in (start, end), by scanning real time minute by minute.

    Written from the documented rules, independently of crontab's search.
    """

    def matches(wall: datetime) -> bool:
        return (
            wall.minute in cron.minute
            and wall.hour in cron.hour
            and wall.day in cron.day_of_month
            and wall.month in cron.month_of_year
            and (wall.weekday() + 1) % 7 in cron.day_of_week
        )

    every_hour = len(cron.hour) == 24
    fires: list[datetime] = []
    moment = start + timedelta(minutes=1)
    while moment < end:
        wall = moment.astimezone(zone)
        before = (moment - timedelta(minutes=1)).astimezone(zone)
        jumped = wall.utcoffset() != before.utcoffset() and wall.replace(
            tzinfo=None
        ) - before.replace(tzinfo=None) > timedelta(minutes=1)
        skipped = []
        if jumped:
            step = before.replace(tzinfo=None) + timedelta(minutes=1)
            while step < wall.replace(tzinfo=None):
                skipped.append(step)
                step += timedelta(minutes=1)
        if matches(wall) and (every_hour or wall.fold == 0):
            fires.append(moment)
        elif not every_hour and any(matches(s) for s in skipped):
            fires.append(moment)
        moment += timedelta(minutes=1)
    return fires


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        (NY, utc(2025, 3, 8, 20)),
        (NY, utc(2025, 11, 1, 20)),
        (BERLIN, utc(2025, 3, 29, 18)),
        (BERLIN, utc(2025, 10, 25, 18)),
        (LORD_HOWE, utc(2025, 4, 4, 18)),
        (LORD_HOWE, utc(2025, 10, 4, 0)),
        (SANTIAGO, utc(2025, 4, 5, 12)),
        (SANTIAGO, utc(2025, 9, 6, 12)),
    ],
)
@pytest.mark.parametrize(
    "fields",
    [
        {"minute": 0},
        {"minute": "*/15"},
        {"minute": "*/7"},
        {"minute": 30, "hour": 2},
        {"minute": "0,30", "hour": "1-3"},
        {"minute": "*/20", "hour": "0,1,2,23"},
        {"minute": 45, "hour": 1},
        {"minute": 15, "hour": "23,0"},
    ],
)
def test_matches_minute_by_minute_reference_across_dst(
    zone: ZoneInfo, start: datetime, fields: dict[str, Any]
) -> None:
    cron = crontab(**fields, tz=zone)
    end = start + timedelta(hours=36)
    assert start.astimezone(zone).utcoffset() != end.astimezone(zone).utcoffset()
    assert _fires(cron, start, end) == _reference_fires(cron, zone, start, end)


def test_every_minute_for_a_dst_day_is_strictly_increasing_without_repeats() -> None:
    cron = crontab(tz=NY)
    start = local(NY, 2025, 11, 2, 0, 0)
    fires = _fires(cron, start, start + timedelta(hours=4))
    # 4 real hours of minutes: the repeated hour is fired again because hour is '*'
    assert len(fires) == 4 * 60 - 1
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(fires))
