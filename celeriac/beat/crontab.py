"""``crontab``: fire at wall-clock times matching cron fields, in a time zone.

Field syntax follows Celery's ``crontab``: an int, an iterable of ints (or of
strings), or a string made of comma-separated parts, each ``*``, ``*/step``, ``N``,
``N-M`` or ``N-M/step``. A range whose end is below its start wraps around
(``hour='22-2'``, ``day_of_week='fri-mon'``). ``day_of_week`` takes ``0``-``6`` with
Sunday = 0, also ``7`` for Sunday, and day names (``'mon'``, ``'monday'``);
``month_of_year`` takes ``1``-``12`` and month names (``'jan'``, ``'january'``).

A day must match ``day_of_month`` AND ``day_of_week`` AND ``month_of_year``. That is
Celery's rule (its docs: "any day on which execution should occur must be
represented by entries in all three of the day and month attributes"); Vixie cron
instead fires when *either* restricted day field matches. So
``crontab(day_of_month='1-7', day_of_week='mon')`` is "the first Monday".

Time zones and DST. Fields are wall-clock times in ``tz`` (UTC when not given; beat
passes the app's ``timezone`` through :meth:`BaseSchedule.with_default_tz`):

* A schedule whose ``hour`` is ``*`` repeats within every hour, so it follows real
  time, like Vixie cron's wildcard jobs: wall times skipped by spring-forward simply
  do not happen, and the repeated hour of fall-back fires again (it is a new real
  hour). An hourly crontab fires every real hour, with no double and no gap.
* Any other schedule names fixed hours. A wall time skipped by spring-forward fires
  once, at the first valid instant after it (the moment of the jump: 02:30 on the
  day New York springs forward fires at 03:00 EDT); several skipped times collapse
  into that one run. A wall time that occurs twice at fall-back fires once, at its
  first occurrence.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celeriac.beat.schedules import BaseSchedule, NowFun, ScheduleDict, require_aware

__all__ = [
    "DAY_OF_MONTH",
    "DAY_OF_WEEK",
    "HOUR",
    "MINUTE",
    "MONTH_OF_YEAR",
    "CronField",
    "Cronspec",
    "ParseException",
    "crontab",
    "parse_cronspec",
    "render_cronspec",
    "resolve_tz",
]

#: What a crontab field accepts.
Cronspec = int | str | Iterable[int | str]

_DAY_NAMES = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_MONTH_NAMES = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
# The longest each month can be (February in a leap year), to reject impossible dates.
_MAX_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# The Gregorian calendar repeats every 400 years, so a possible date occurs within that.
_CALENDAR_CYCLE_YEARS = 400
_ONE_MINUTE = timedelta(minutes=1)


def _names(full: tuple[str, ...], first: int) -> Mapping[str, int]:
    """Map full and three-letter names to numbers starting at ``first``."""
    table: dict[str, int] = {}
    for number, name in enumerate(full, start=first):
        table[name] = number
        table[name[:3]] = number
    return table


@dataclass(frozen=True)
class CronField:
    """One crontab field: its name, the values ``*`` stands for, and accepted names."""

    name: str
    low: int
    high: int  # the highest value '*' stands for
    accept_high: int  # the highest value accepted (day_of_week accepts 7 = Sunday)
    names: Mapping[str, int]

    def everything(self) -> list[int]:
        """Return every value ``*`` stands for, in order."""
        return list(range(self.low, self.high + 1))


MINUTE = CronField("minute", 0, 59, 59, {})
HOUR = CronField("hour", 0, 23, 23, {})
DAY_OF_WEEK = CronField("day_of_week", 0, 6, 7, _names(_DAY_NAMES, 0))
DAY_OF_MONTH = CronField("day_of_month", 1, 31, 31, {})
MONTH_OF_YEAR = CronField("month_of_year", 1, 12, 12, _names(_MONTH_NAMES, 1))


class ParseException(ValueError):
    """A crontab field cannot be parsed (Celery's ``celery.schedules.ParseException``)."""


def _bad(field: CronField, value: object, why: str) -> ValueError:
    """Build the error for an invalid value of ``field``."""
    return ParseException(f"crontab {field.name}: invalid value {value!r} ({why})")


def _number(field: CronField, token: str, spec: object) -> int:
    """Return the number a token stands for: digits, or a day/month name."""
    text = token.strip().lower()
    if text.isascii() and text.isdigit():
        value = int(text)
    elif text in field.names:
        value = field.names[text]
    else:
        raise _bad(field, spec, f"{token.strip()!r} is not a number or a known name")
    if not field.low <= value <= field.accept_high:
        raise _bad(field, spec, f"{value} is outside {field.low}-{field.accept_high}")
    return value


def _expand_range(field: CronField, text: str, spec: object) -> list[int]:
    """Expand ``N`` or ``N-M`` (wrapping around when ``M < N``) into a list of values."""
    if "-" not in text:
        return [_number(field, text, spec)]
    start_text, _, end_text = text.partition("-")
    start, end = _number(field, start_text, spec), _number(field, end_text, spec)
    if end >= start:
        return list(range(start, end + 1))
    # A backwards range wraps past the field's top value (hour '22-2' is 22, 23, 0, 1, 2).
    return list(range(start, field.high + 1)) + list(range(field.low, end + 1))


def _parse_part(field: CronField, part: str, spec: object) -> list[int]:
    """Expand one comma-separated part: ``*``, ``*/s``, ``N``, ``N-M`` or ``N-M/s``."""
    text = part.strip()
    if not text:
        raise _bad(field, spec, "empty part")
    base, slash, step_text = text.partition("/")
    if base.strip() == "*":
        values = field.everything()
    elif slash and "-" not in base:
        # Celery rejects 'N/step' (Quartz reads it as N-max/step): refuse the ambiguity.
        raise _bad(field, spec, f"{text!r}: a step needs '*' or a range before it")
    else:
        values = _expand_range(field, base, spec)
    if not slash:
        return values
    step = step_text.strip()
    if not (step.isascii() and step.isdigit()) or int(step) == 0:
        raise _bad(field, spec, f"{text!r}: the step must be a positive number")
    return values[:: int(step)]


def parse_cronspec(field: CronField, spec: Cronspec) -> frozenset[int]:
    """Return the set of values ``spec`` selects for ``field``; raise ValueError if invalid."""
    if isinstance(spec, bool):
        raise _bad(field, spec, "not a cron value")
    if isinstance(spec, int):
        if not field.low <= spec <= field.accept_high:
            raise _bad(field, spec, f"{spec} is outside {field.low}-{field.accept_high}")
        values = [spec]
    elif isinstance(spec, str):
        values = [v for part in spec.split(",") for v in _parse_part(field, part, spec)]
    elif isinstance(spec, Iterable):
        values = [v for item in spec for v in parse_cronspec(field, item)]
        if not values:
            raise _bad(field, spec, "empty")
    else:
        raise TypeError(f"crontab {field.name}: unsupported type {type(spec).__name__}")
    # 7 is Sunday in day_of_week, as in cron; store it as 0 like Celery does.
    return frozenset(0 if field is DAY_OF_WEEK and v == 7 else v for v in values)


def render_cronspec(field: CronField, values: frozenset[int]) -> str:
    """Return the canonical text of a value set: ``*``, or numbers and ``a-b`` runs."""
    if values == frozenset(field.everything()):
        return "*"
    ordered = sorted(values)
    parts: list[str] = []
    run_start = previous = ordered[0]
    for value in [*ordered[1:], None]:
        if value is not None and value == previous + 1:
            previous = value
            continue
        if previous - run_start >= 2:
            parts.append(f"{run_start}-{previous}")
        else:
            parts.extend(str(v) for v in range(run_start, previous + 1))
        if value is not None:
            run_start = previous = value
    return ",".join(parts)


def resolve_tz(tz: tzinfo | str | None) -> ZoneInfo | None:
    """Return ``tz`` as a ZoneInfo (from a name, ZoneInfo, pytz zone or UTC); None stays None."""
    if tz is None or isinstance(tz, ZoneInfo):
        if isinstance(tz, ZoneInfo) and tz.key is None:
            raise ValueError("crontab tz: a ZoneInfo read from a file has no name to persist")
        return tz
    name = tz if isinstance(tz, str) else str(tz)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"crontab tz: unknown time zone {tz!r}") from exc


def _cron_weekday(day: date) -> int:
    """Return the cron weekday of ``day``: Sunday = 0 ... Saturday = 6."""
    return (day.weekday() + 1) % 7


class crontab(BaseSchedule):
    """Fire at the wall-clock minutes matching all five cron fields, in time zone ``tz``.

    The parsed fields are exposed as Celery does: ``.minute``, ``.hour``,
    ``.day_of_week`` (Sunday = 0), ``.day_of_month`` and ``.month_of_year`` are sets
    of ints. See the module docstring for the syntax and the DST rules.
    """

    kind = "crontab"

    def __init__(
        self,
        minute: Cronspec = "*",
        hour: Cronspec = "*",
        day_of_week: Cronspec = "*",
        day_of_month: Cronspec = "*",
        month_of_year: Cronspec = "*",
        *,
        tz: tzinfo | str | None = None,
        nowfun: NowFun | None = None,
    ) -> None:
        super().__init__(nowfun=nowfun)
        self.minute = parse_cronspec(MINUTE, minute)
        self.hour = parse_cronspec(HOUR, hour)
        self.day_of_week = parse_cronspec(DAY_OF_WEEK, day_of_week)
        self.day_of_month = parse_cronspec(DAY_OF_MONTH, day_of_month)
        self.month_of_year = parse_cronspec(MONTH_OF_YEAR, month_of_year)
        self.tz = resolve_tz(tz)
        if not any(
            d <= _MAX_MONTH_DAYS[m - 1] for m in self.month_of_year for d in self.day_of_month
        ):
            raise ValueError(
                f"crontab day_of_month={day_of_month!r} never occurs in "
                f"month_of_year={month_of_year!r}"
            )
        self._zone: tzinfo = self.tz or UTC
        self._minutes = sorted(self.minute)
        self._hours = sorted(self.hour)
        self._days = sorted(self.day_of_month)
        self._months = sorted(self.month_of_year)
        # See the module docstring: an every-hour schedule follows real time across DST.
        self._every_hour = len(self.hour) == 24

    @classmethod
    def from_string(cls, spec: str, *, tz: tzinfo | str | None = None) -> crontab:
        """Build a crontab from a cron line ``'minute hour day_of_month month day_of_week'``."""
        fields = spec.split()
        if len(fields) != 5:
            raise ValueError(f"crontab: expected 5 fields in {spec!r}, got {len(fields)}")
        minute, hour, day_of_month, month_of_year, day_of_week = fields
        return cls(minute, hour, day_of_week, day_of_month, month_of_year, tz=tz)

    @classmethod
    def from_dict(cls, data: ScheduleDict) -> crontab:
        """Build a crontab from :meth:`to_dict` output."""
        if data.get("kind") != cls.kind:
            raise ValueError(f"not a crontab schedule description: {data!r}")
        return cls(
            minute=data["minute"],
            hour=data["hour"],
            day_of_week=data["day_of_week"],
            day_of_month=data["day_of_month"],
            month_of_year=data["month_of_year"],
            tz=data.get("tz"),
        )

    def _cron_line(self) -> str:
        """Return the canonical ``m h dom mon dow`` line."""
        return " ".join(
            (
                render_cronspec(MINUTE, self.minute),
                render_cronspec(HOUR, self.hour),
                render_cronspec(DAY_OF_MONTH, self.day_of_month),
                render_cronspec(MONTH_OF_YEAR, self.month_of_year),
                render_cronspec(DAY_OF_WEEK, self.day_of_week),
            )
        )

    def key(self) -> str:
        """Return ``crontab:<m h dom mon dow>``, plus ``@<zone>`` when a zone is set."""
        zone = f"@{self.tz.key}" if self.tz is not None else ""
        return f"crontab:{self._cron_line()}{zone}"

    def to_dict(self) -> ScheduleDict:
        """Return the kind, the five fields in canonical text, and the zone name (or None)."""
        return {
            "kind": self.kind,
            "minute": render_cronspec(MINUTE, self.minute),
            "hour": render_cronspec(HOUR, self.hour),
            "day_of_week": render_cronspec(DAY_OF_WEEK, self.day_of_week),
            "day_of_month": render_cronspec(DAY_OF_MONTH, self.day_of_month),
            "month_of_year": render_cronspec(MONTH_OF_YEAR, self.month_of_year),
            "tz": self.tz.key if self.tz is not None else None,
        }

    def with_default_tz(self, tz: tzinfo | str | None) -> crontab:
        """Return a copy evaluated in ``tz`` when this crontab names no zone of its own."""
        if self.tz is not None or tz is None:
            return self
        data = self.to_dict()
        data["tz"] = tz
        copy = crontab.from_dict(data)
        copy.nowfun = self.nowfun
        return copy

    def next_run(self, last_run: datetime | None, now: datetime) -> datetime:
        """Return the first firing time after ``last_run`` (at or after ``now`` if None), UTC."""
        now_utc = require_aware(now, "now")
        if last_run is None:
            return self._next_after(now_utc - timedelta(microseconds=1))
        return self._next_after(require_aware(last_run, "last_run"))

    # -- the search, in naive wall-clock time of self._zone -------------------------------

    def _matching_dates(self, start: date) -> Iterable[date]:
        """Yield the days matching the three day fields, from ``start`` on, in order."""
        for year in range(start.year, min(start.year + _CALENDAR_CYCLE_YEARS, 9999) + 1):
            for month in self._months:
                if (year, month) < (start.year, start.month):
                    continue
                first = start.day if (year, month) == (start.year, start.month) else 1
                last = calendar.monthrange(year, month)[1]
                for day in self._days:
                    if first <= day <= last:
                        candidate = date(year, month, day)
                        if _cron_weekday(candidate) in self.day_of_week:
                            yield candidate
        raise ValueError(f"{self!r} has no run between {start} and year 9999")

    def _first_time(self, at_or_after: time) -> time | None:
        """Return the first matching hour:minute at or after ``at_or_after``, if any today."""
        for hour in self._hours:
            if hour < at_or_after.hour:
                continue
            floor = at_or_after.minute if hour == at_or_after.hour else 0
            for minute in self._minutes:
                if minute >= floor:
                    return time(hour, minute)
        return None

    def _first_wall_from(self, start: datetime) -> datetime:
        """Return the first matching wall-clock minute at or after ``start`` (naive)."""
        for day in self._matching_dates(start.date()):
            floor = start.time() if day == start.date() else time(0, 0)
            found = self._first_time(floor)
            if found is not None:
                return datetime.combine(day, found)
        raise AssertionError("unreachable: _matching_dates raises when exhausted")

    def _next_wall(self, after: datetime) -> datetime:
        """Return the first matching wall-clock minute strictly after ``after`` (naive)."""
        return self._first_wall_from(after.replace(second=0, microsecond=0, fold=0) + _ONE_MINUTE)

    def _offsets(self, wall: datetime) -> tuple[timedelta, timedelta]:
        """Return the UTC offsets of ``wall`` read with fold=0 and with fold=1."""
        first = wall.replace(tzinfo=self._zone, fold=0).utcoffset()
        second = wall.replace(tzinfo=self._zone, fold=1).utcoffset()
        assert first is not None and second is not None  # a tzinfo always gives offsets
        return first, second

    def _instants(self, wall: datetime) -> list[datetime]:
        """Return the UTC instants at which wall-clock minute ``wall`` fires, in order."""
        off_first, off_second = self._offsets(wall)
        earlier = (wall - off_first).replace(tzinfo=UTC)
        if off_first == off_second:
            return [earlier]
        if off_first > off_second:  # fall-back: the wall time occurs twice
            later = (wall - off_second).replace(tzinfo=UTC)
            return [earlier, later] if self._every_hour else [earlier]
        # spring-forward: the wall time does not exist
        return [] if self._every_hour else [self._gap_end(wall, off_first, off_second)]

    def _gap_end(self, wall: datetime, before: timedelta, after: timedelta) -> datetime:
        """Return the instant the clock jumps over ``wall`` (the first valid instant after it)."""
        # Bisect whole seconds: wall-clock time before the jump is below `wall`, after it above.
        low = int((wall - after).replace(tzinfo=UTC).timestamp())
        high = int((wall - before).replace(tzinfo=UTC).timestamp())
        while high - low > 1:
            middle = (low + high) // 2
            local = datetime.fromtimestamp(middle, UTC).astimezone(self._zone)
            if local.replace(tzinfo=None) >= wall:
                high = middle
            else:
                low = middle
        return datetime.fromtimestamp(high, UTC)

    def _next_after(self, anchor: datetime) -> datetime:
        """Return the first firing instant strictly after ``anchor`` (UTC)."""
        local = anchor.astimezone(self._zone)
        wall = local.replace(tzinfo=None)
        best = self._scan(anchor, self._next_wall(wall))
        off_first, off_second = self._offsets(wall)
        if self._every_hour and local.fold == 0 and off_first > off_second:
            # The anchor is in the first pass of a repeated hour: the repeat of an earlier
            # wall time can come before the first matching wall time after the anchor.
            repeat = self._first_repeat(wall, off_first - off_second)
            if repeat is not None and repeat < best:
                best = repeat
        return best

    def _scan(self, anchor: datetime, wall: datetime) -> datetime:
        """Return the first instant after ``anchor`` of matching walls from ``wall`` on."""
        while True:
            for instant in self._instants(wall):
                if instant > anchor:
                    return instant
            wall = self._next_wall(wall)

    def _first_repeat(self, wall: datetime, span: timedelta) -> datetime | None:
        """Return the second occurrence of the first matching wall in the fold around ``wall``."""
        start = (wall - span).replace(second=0, microsecond=0) + _ONE_MINUTE
        candidate = self._first_wall_from(start)
        while candidate < wall + span:
            off_first, off_second = self._offsets(candidate)
            if off_first > off_second:
                return (candidate - off_second).replace(tzinfo=UTC)
            candidate = self._next_wall(candidate)
        return None

    def __repr__(self) -> str:
        zone = f" {self.tz.key}" if self.tz is not None else ""
        return f"<crontab: {self._cron_line()} (m/h/dM/MY/d){zone}>"
