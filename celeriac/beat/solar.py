"""``solar``: fire at a solar event (sunrise, sunset, dawn, dusk, noon) at a place.

Celery computes these with the ``ephem`` package; celeriac uses NOAA's solar
position equations (the ones behind NOAA's Solar Calculator), which agree with
published sunrise and sunset times to about a minute away from the poles.

Event definitions match Celery's: sunrise and sunset are when the sun's upper limb
touches the horizon with standard refraction (zenith 90.833 degrees); civil,
nautical and astronomical dawn/dusk are when the sun's centre is 6, 12 and 18
degrees below the horizon; solar noon is the sun's transit.

Each event happens at most once per day. Near the poles some days have none (no
sunrise in polar night, no astronomical dusk in a white night): those days are
skipped and the next day that has the event is used. Within about 0.1 degree of a
pole the sun's height hardly changes over a day and a daily event may not exist in
any year: the constructor raises ValueError then (``solar_noon`` always exists).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

from celeriac.beat.schedules import BaseSchedule, NowFun, ScheduleDict, require_aware

__all__ = ["EVENTS", "solar", "solar_event_time"]

#: Celery's event names -> (which crossing, the sun's zenith angle in degrees).
EVENTS: dict[str, tuple[str, float]] = {
    "dawn_astronomical": ("rise", 108.0),
    "dawn_nautical": ("rise", 102.0),
    "dawn_civil": ("rise", 96.0),
    "sunrise": ("rise", 90.833),
    "solar_noon": ("noon", 0.0),
    "sunset": ("set", 90.833),
    "dusk_civil": ("set", 96.0),
    "dusk_nautical": ("set", 102.0),
    "dusk_astronomical": ("set", 108.0),
}

# How far ahead to look for a day that has the event. Outside about 0.2 degrees of a
# pole every event happens at least once a year; three years leaves ample margin.
_SEARCH_DAYS = 3 * 366
# Beyond this latitude, check at construction that the event happens at all.
_POLAR_CHECK_LATITUDE = 85.0
_J2000 = datetime(2000, 1, 1, 12, tzinfo=UTC)  # Julian day 2451545.0
_REFINEMENTS = 3  # each pass recomputes the sun's position at the previous estimate


def _julian_day(moment: datetime) -> float:
    """Return the Julian day number of an aware datetime."""
    return 2451545.0 + (moment - _J2000).total_seconds() / 86400.0


def _sun_position(julian_day: float) -> tuple[float, float]:
    """Return the sun's declination (radians) and the equation of time (minutes).

    NOAA's low-precision solar coordinates (Meeus, Astronomical Algorithms, ch. 25).
    """
    t = (julian_day - 2451545.0) / 36525.0  # Julian centuries since J2000
    mean_long = math.radians((280.46646 + t * (36000.76983 + 0.0003032 * t)) % 360.0)
    anomaly = math.radians(357.52911 + t * (35999.05029 - 0.0001537 * t))
    eccentricity = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    centre = (
        math.sin(anomaly) * (1.914602 - t * (0.004817 + 0.000014 * t))
        + math.sin(2 * anomaly) * (0.019993 - 0.000101 * t)
        + math.sin(3 * anomaly) * 0.000289
    )
    omega = math.radians(125.04 - 1934.136 * t)
    apparent_long = math.radians(
        math.degrees(mean_long) + centre - 0.00569 - 0.00478 * math.sin(omega)
    )
    seconds = 21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))
    obliquity = math.radians(23.0 + (26.0 + seconds / 60.0) / 60.0 + 0.00256 * math.cos(omega))
    declination = math.asin(math.sin(obliquity) * math.sin(apparent_long))
    y = math.tan(obliquity / 2) ** 2
    equation = (
        y * math.sin(2 * mean_long)
        - 2 * eccentricity * math.sin(anomaly)
        + 4 * eccentricity * y * math.sin(anomaly) * math.cos(2 * mean_long)
        - 0.5 * y * y * math.sin(4 * mean_long)
        - 1.25 * eccentricity * eccentricity * math.sin(2 * anomaly)
    )
    return declination, 4.0 * math.degrees(equation)


def _cos_hour_angle(zenith: float, lat: float, declination: float) -> float:
    """Return the cosine of the hour angle at which the sun reaches ``zenith``.

    Outside [-1, 1] the sun never reaches it that day: below -1 it stays above
    (white night, polar day), above 1 it stays below (polar night).
    """
    lat_r = math.radians(lat)
    # At a pole the sun's height does not depend on the hour; nudge off it.
    denominator = max(math.cos(lat_r) * math.cos(declination), 1e-12)
    return math.cos(math.radians(zenith)) / denominator - math.tan(lat_r) * math.tan(declination)


def solar_event_time(event: str, lat: float, lon: float, day: date) -> datetime | None:
    """Return the UTC time of ``event`` on the solar day around ``day``'s noon, or None.

    ``day`` is a UTC date; the event is the one nearest that day's solar noon at
    longitude ``lon`` (east positive). None means the event does not happen that day.
    """
    crossing, zenith = EVENTS[event]
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    minutes = 720.0 - 4.0 * lon  # first guess: solar noon, ignoring the equation of time
    cos_ha = 0.0
    for _ in range(_REFINEMENTS):
        declination, equation = _sun_position(_julian_day(midnight) + minutes / 1440.0)
        noon = 720.0 - 4.0 * lon - equation
        if crossing == "noon":
            minutes = noon
            continue
        cos_ha = _cos_hour_angle(zenith, lat, declination)
        # Clamp rather than give up: on the edge of polar day the event may exist at the
        # sun's position near midnight though not at noon's; the last pass decides.
        hour_angle = math.degrees(math.acos(min(max(cos_ha, -1.0), 1.0)))
        minutes = noon - 4.0 * hour_angle if crossing == "rise" else noon + 4.0 * hour_angle
    if not -1.0 <= cos_ha <= 1.0:
        return None
    return midnight + timedelta(minutes=minutes)


def _check_coordinate(name: str, value: float, limit: float) -> float:
    """Return ``value`` as a float; raise ValueError naming ``name`` if out of range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"solar {name} must be a number, got {value!r}")
    if not math.isfinite(value) or not -limit <= value <= limit:
        raise ValueError(f"solar {name} {value!r} is out of range -{limit:g}..{limit:g}")
    return float(value)


class solar(BaseSchedule):
    """Fire at ``event`` (one of :data:`EVENTS`) at latitude ``lat``, longitude ``lon``.

    Longitude is east-positive, as in Celery. ``next_run`` returns the first event
    strictly after ``last_run`` (at or after ``now`` when it never ran), in UTC.
    """

    kind = "solar"

    def __init__(self, event: str, lat: float, lon: float, *, nowfun: NowFun | None = None) -> None:
        super().__init__(nowfun=nowfun)
        if event not in EVENTS:
            known = ", ".join(sorted(EVENTS))
            raise ValueError(f"solar event {event!r} is not one of: {known}")
        self.event = event
        self.lat = _check_coordinate("latitude", lat, 90.0)
        self.lon = _check_coordinate("longitude", lon, 180.0)
        if abs(self.lat) > _POLAR_CHECK_LATITUDE:
            try:
                self._first_after(_J2000)
            except ValueError:
                # At a pole the sun's height does not change over a day, so there is no
                # daily rise or set to fire on: say so now, not when beat first asks.
                raise ValueError(
                    f"solar event {event!r} never happens at latitude {lat!r} "
                    "(too close to the pole)"
                ) from None

    @classmethod
    def from_dict(cls, data: ScheduleDict) -> solar:
        """Build a solar schedule from :meth:`to_dict` output."""
        if data.get("kind") != cls.kind:
            raise ValueError(f"not a solar schedule description: {data!r}")
        return cls(data["event"], data["lat"], data["lon"])

    def key(self) -> str:
        """Return ``solar:<event> <lat> <lon>``, e.g. ``solar:sunrise 52.52 13.405``."""
        return f"solar:{self.event} {self.lat!r} {self.lon!r}"

    def to_dict(self) -> ScheduleDict:
        """Return ``{"kind": "solar", "event": ..., "lat": ..., "lon": ...}``."""
        return {"kind": self.kind, "event": self.event, "lat": self.lat, "lon": self.lon}

    def next_run(self, last_run: datetime | None, now: datetime) -> datetime:
        """Return the first event after ``last_run`` (at or after ``now`` if None), in UTC."""
        now_utc = require_aware(now, "now")
        if last_run is None:
            return self._first_after(now_utc - timedelta(microseconds=1))
        return self._first_after(require_aware(last_run, "last_run"))

    def _first_after(self, anchor: datetime) -> datetime:
        """Return the first event strictly after ``anchor``, skipping days without it."""
        # Start two days early: at longitudes near +-180 a UTC date's event can fall on
        # the day before or after it.
        day = anchor.date() - timedelta(days=2)
        for _ in range(_SEARCH_DAYS):
            moment = solar_event_time(self.event, self.lat, self.lon, day)
            if moment is not None and moment > anchor:
                return moment
            day += timedelta(days=1)
        raise ValueError(
            f"solar event {self.event!r} does not happen at latitude {self.lat!r} "
            f"within {_SEARCH_DAYS} days of {anchor.isoformat()}"
        )

    def __repr__(self) -> str:
        return f"<solar: {self.event} at latitude {self.lat!r}, longitude: {self.lon!r}>"
