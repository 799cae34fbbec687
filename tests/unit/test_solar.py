"""solar: NOAA sun equations against published times, polar day/night, validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from celeriac.beat.solar import EVENTS
from celeriac.schedules import schedstate, solar

LONDON = (51.5074, -0.1278)
NEW_YORK = (40.7128, -74.0060)
SYDNEY = (-33.8688, 151.2093)
REYKJAVIK = (64.1466, -21.9426)
TROMSO = (69.6492, 18.9553)
TOLERANCE = timedelta(minutes=3)

# Published sunrise/sunset times (local clock, to the minute) for well-known days.
PUBLISHED: list[tuple[str, tuple[float, float], str, str, str]] = [
    ("sunrise", LONDON, "Europe/London", "2024-06-20", "04:43"),
    ("sunset", LONDON, "Europe/London", "2024-06-20", "21:21"),
    ("sunrise", LONDON, "Europe/London", "2024-12-21", "08:04"),
    ("sunset", LONDON, "Europe/London", "2024-12-21", "15:53"),
    ("sunrise", NEW_YORK, "America/New_York", "2024-06-20", "05:25"),
    ("sunset", NEW_YORK, "America/New_York", "2024-06-20", "20:31"),
    ("sunrise", SYDNEY, "Australia/Sydney", "2024-12-21", "05:41"),
    ("sunset", SYDNEY, "Australia/Sydney", "2024-12-21", "20:05"),
    ("sunrise", REYKJAVIK, "Atlantic/Reykjavik", "2024-12-21", "11:22"),
    ("sunset", REYKJAVIK, "Atlantic/Reykjavik", "2024-12-21", "15:29"),
]


@pytest.mark.parametrize(("event", "place", "zone", "day", "clock"), PUBLISHED)
def test_matches_published_times(
    event: str, place: tuple[float, float], zone: str, day: str, clock: str
) -> None:
    tz = ZoneInfo(zone)
    midnight = datetime.fromisoformat(day).replace(tzinfo=tz)
    expected = datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=tz)
    result = solar(event, *place).next_run(None, midnight)
    assert abs(result - expected) <= TOLERANCE, result.astimezone(tz)


@pytest.mark.parametrize(
    ("day", "noon"),
    [
        # At Greenwich solar noon is 12:00 minus the equation of time (NOAA tables).
        ("2024-02-11", "12:14:13"),
        ("2024-11-03", "11:43:34"),
    ],
)
def test_solar_noon_follows_the_equation_of_time(day: str, noon: str) -> None:
    midnight = datetime.fromisoformat(day).replace(tzinfo=UTC)
    expected = datetime.fromisoformat(f"{day}T{noon}").replace(tzinfo=UTC)
    result = solar("solar_noon", 51.4769, 0.0).next_run(None, midnight)
    assert abs(result - expected) <= timedelta(minutes=1)


def test_events_of_one_day_come_in_order() -> None:
    midnight = datetime(2024, 3, 20, tzinfo=ZoneInfo("Europe/London"))
    times = [solar(event, *LONDON).next_run(None, midnight) for event in EVENTS]
    assert times == sorted(times)
    assert times[-1] - times[0] < timedelta(hours=24)


def test_next_run_is_strictly_after_last_run() -> None:
    start = datetime(2024, 6, 20, tzinfo=UTC)
    sunrise = solar("sunrise", *LONDON)
    first = sunrise.next_run(None, start)
    assert sunrise.next_run(None, first) == first  # at or after now when it never ran
    second = sunrise.next_run(first, first)
    assert timedelta(hours=23, minutes=55) < second - first < timedelta(hours=24, minutes=5)


def test_missed_event_after_downtime_is_in_the_past_then_moves_on() -> None:
    sunset = solar("sunset", *NEW_YORK)
    last = datetime(2024, 6, 1, 1, 0, tzinfo=UTC)  # after the 31 May sunset
    now = datetime(2024, 6, 10, 12, tzinfo=UTC)
    missed = sunset.next_run(last, now)
    assert missed < now
    assert missed.date() == datetime(2024, 6, 2).date()  # 1 June 20:2x EDT = 2 June UTC
    assert sunset.next_run(now, now) > now


def test_is_due_with_fake_now() -> None:
    now = datetime(2024, 6, 20, 12, tzinfo=UTC)
    sunrise = solar("sunrise", *LONDON, nowfun=lambda: now)
    due, next_check = sunrise.is_due(datetime(2024, 6, 19, 12, tzinfo=UTC))
    assert due is True
    assert timedelta(hours=15) < timedelta(seconds=next_check) < timedelta(hours=17)
    assert sunrise.is_due(now) == schedstate(False, next_check)


def test_polar_night_skips_to_the_first_sunrise() -> None:
    start = datetime(2024, 12, 1, tzinfo=UTC)
    result = solar("sunrise", *TROMSO).next_run(start, start)
    # The sun is below Tromso's horizon from late November to mid January.
    assert datetime(2025, 1, 13, tzinfo=UTC) < result < datetime(2025, 1, 18, tzinfo=UTC)


def test_polar_day_skips_to_the_first_sunset() -> None:
    start = datetime(2024, 6, 21, tzinfo=UTC)
    result = solar("sunset", *TROMSO).next_run(start, start)
    # Midnight sun in Tromso lasts until late July.
    assert datetime(2024, 7, 21, tzinfo=UTC) < result < datetime(2024, 7, 28, tzinfo=UTC)


def test_white_nights_skip_astronomical_dusk() -> None:
    start = datetime(2024, 6, 21, tzinfo=UTC)
    result = solar("dusk_astronomical", *LONDON).next_run(start, start)
    # London has no astronomical night from late May to late July.
    assert datetime(2024, 7, 18, tzinfo=UTC) < result < datetime(2024, 7, 25, tzinfo=UTC)


def test_solar_noon_happens_even_in_polar_night() -> None:
    start = datetime(2024, 12, 21, tzinfo=UTC)
    noon = solar("solar_noon", *TROMSO).next_run(start, start)
    assert noon - start < timedelta(hours=12)


@pytest.mark.parametrize("lon", [179.9, -179.9, 180.0, -180.0])
def test_daily_sequence_has_no_gap_or_double_near_the_date_line(lon: float) -> None:
    sunrise = solar("sunrise", 10.0, lon)
    moment = datetime(2024, 3, 1, tzinfo=UTC)
    for _ in range(40):
        following = sunrise.next_run(moment, moment)
        if moment != datetime(2024, 3, 1, tzinfo=UTC):
            assert (
                timedelta(hours=23, minutes=55)
                < following - moment
                < timedelta(hours=24, minutes=5)
            )
        moment = following


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("sunrise", 91, 0), "latitude"),
        (("sunrise", -90.5, 0), "latitude"),
        (("sunrise", float("nan"), 0), "latitude"),
        (("sunrise", "51", 0), "latitude"),
        (("sunrise", True, 0), "latitude"),
        (("sunrise", 0, 180.5), "longitude"),
        (("sunrise", 0, -181), "longitude"),
        (("sunrise", 0, float("inf")), "longitude"),
        (("moonrise", 0, 0), "moonrise"),
    ],
)
def test_invalid_arguments_name_the_bad_one(
    args: tuple[object, object, object], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        solar(*args)  # type: ignore[arg-type]


def test_daily_events_at_the_pole_are_refused_but_noon_is_fine() -> None:
    with pytest.raises(ValueError, match="latitude 90"):
        solar("sunrise", 90, 0)
    start = datetime(2024, 6, 1, tzinfo=UTC)
    assert solar("solar_noon", 90, 0).next_run(start, start) > start


def test_near_the_pole_sunrise_comes_once_a_year_at_the_equinox() -> None:
    start = datetime(2024, 6, 1, tzinfo=UTC)
    result = solar("sunrise", -89.5, 0.0).next_run(start, start)
    # At the South Pole the sun rises around the September equinox.
    assert datetime(2024, 9, 10, tzinfo=UTC) < result < datetime(2024, 10, 1, tzinfo=UTC)


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="now"):
        solar("sunrise", 0, 0).next_run(None, datetime(2024, 6, 1))
