"""Cron schedules as CronJobs read them (robfig/cron ParseStandard, which upstream uses).

Five fields (minute hour day-of-month month day-of-week) with `*`, `?`, lists, ranges,
steps and month/weekday names, or a descriptor (`@yearly`, `@annually`, `@monthly`,
`@weekly`, `@daily`, `@midnight`, `@hourly`, `@every <duration>`). When both day fields are
restricted a day matches either (cron's rule); a `*` in one makes both required. Pure: no
clock, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

_MAX_TEXT = 1024  # a schedule longer than this is refused before any parsing
_SEARCH_YEARS = 5  # robfig gives up after five years without a match

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class CronError(ValueError):
    """A schedule that does not parse; the message is robfig's wording."""


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_star: bool
    weekdays_star: bool
    every: timedelta | None = None  # `@every`: a constant delay instead of fields

    def _day_matches(self, when: datetime) -> bool:
        dom = when.day in self.days
        dow = (when.isoweekday() % 7) in self.weekdays
        if self.days_star or self.weekdays_star:
            return dom and dow
        return dom or dow

    def next_after(self, after: datetime, zone: tzinfo | None = None) -> datetime | None:
        """The first activation strictly after `after` (aware), in wall-clock time of
        `zone` (default: after's own zone); None when none comes within five years (or
        before the end of the calendar)."""
        try:
            return self._next_after(after, zone)
        except (OverflowError, ValueError):
            return None

    def _next_after(self, after: datetime, zone: tzinfo | None) -> datetime | None:
        if self.every is not None:
            step = max(self.every, timedelta(seconds=1))
            base = after.replace(microsecond=0)
            return base + timedelta(seconds=int(step.total_seconds()))
        local = after.astimezone(zone) if zone is not None else after
        wall = local.replace(tzinfo=None, second=0, microsecond=0) + timedelta(minutes=1)
        limit = wall + timedelta(days=366 * _SEARCH_YEARS)
        while wall <= limit:
            if wall.month not in self.months:
                year, month = (
                    (wall.year + 1, 1) if wall.month == 12 else (wall.year, wall.month + 1)
                )
                wall = datetime(year, month, 1)
                continue
            if not self._day_matches(wall):
                wall = datetime(wall.year, wall.month, wall.day) + timedelta(days=1)
                continue
            if wall.hour not in self.hours:
                wall = wall.replace(minute=0) + timedelta(hours=1)
                continue
            if wall.minute not in self.minutes:
                wall += timedelta(minutes=1)
                continue
            tz = local.tzinfo
            found = wall.replace(tzinfo=tz)
            if found.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall:
                # a wall-clock time that a DST jump skips does not happen that day
                wall += timedelta(minutes=1)
                continue
            return found
        return None

    def times_between(
        self, start: datetime, end: datetime, zone: tzinfo | None, limit: int
    ) -> tuple[list[datetime], bool]:
        """Activations in (start, end], at most `limit` of them (and whether there were more)."""
        out: list[datetime] = []
        t = self.next_after(start, zone)
        while t is not None and t <= end:
            if len(out) == limit:
                return out, True
            out.append(t)
            t = self.next_after(t, zone)
        return out, False


def _field(text: str, low: int, high: int, names: dict[str, int]) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = False
    for part in text.split(","):
        if not part:
            raise CronError('failed to parse int from : strconv.Atoi: parsing "": invalid syntax')
        range_step = part.split("/")
        if len(range_step) > 2:
            raise CronError(f"too many slashes: {part}")
        low_high = range_step[0].split("-")
        if len(low_high) > 2:
            raise CronError(f"too many hyphens: {part}")
        single = len(low_high) == 1
        if low_high[0] in ("*", "?"):
            if not single:
                raise CronError(f"failed to parse int from {low_high[1]}")
            start, end, is_star = low, high, True
        else:
            start = _value(low_high[0], names)
            end = _value(low_high[1], names) if not single else start
            is_star = False
        step = 1
        if len(range_step) == 2:
            step = _number(range_step[1])
            if single and not is_star:
                end = high  # "N/step" means N-max/step
            if step > 1:
                is_star = False
        if start < low:
            raise CronError(f"beginning of range ({start}) below minimum ({low}): {part}")
        if end > high:
            raise CronError(f"end of range ({end}) above maximum ({high}): {part}")
        if start > end:
            raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {part}")
        if step == 0:
            raise CronError(f"step of range should be a positive number: {part}")
        values.update(range(start, end + 1, step))
        star = star or is_star
    return frozenset(values), star


def _number(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise CronError(
            f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax'
        )
    return int(text)


def _value(text: str, names: dict[str, int]) -> int:
    named = names.get(text.lower())
    return named if named is not None else _number(text)


def _duration(text: str) -> timedelta:
    """Go's time.ParseDuration for the units cron accepts (no sign)."""
    pos, total = 0, 0.0
    if text in ("", "0"):
        if text == "0":
            return timedelta(0)
        raise CronError(f'time: invalid duration "{text}"')
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise CronError(f'time: invalid duration "{text}"')
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if total > 292 * 365 * 86400:
        raise CronError(f'time: invalid duration "{text}"')
    return timedelta(seconds=total)


def parse(text: str) -> Schedule:
    """Parse a standard cron spec or descriptor; CronError with robfig's message if not."""
    if not isinstance(text, str) or len(text) > _MAX_TEXT:
        raise CronError("schedule too long")
    spec = text.strip()
    if not spec:
        raise CronError("empty spec string")
    if spec.startswith("TZ=") or spec.startswith("CRON_TZ="):
        raise CronError("time zones in the schedule are not supported")
    if spec.startswith("@"):
        if spec.startswith("@every "):
            delay = _duration(spec[len("@every ") :].strip())
            return Schedule(*(frozenset[int]() for _ in range(5)), False, False, every=delay)
        if spec not in _DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {spec}")
        spec = _DESCRIPTORS[spec]
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: {fields}")
    minutes, _ = _field(fields[0], 0, 59, {})
    hours, _ = _field(fields[1], 0, 23, {})
    days, days_star = _field(fields[2], 1, 31, {})
    months, _ = _field(fields[3], 1, 12, _MONTHS)
    weekdays, weekdays_star = _field(fields[4], 0, 6, _DAYS)
    return Schedule(minutes, hours, days, months, weekdays, days_star, weekdays_star)


def has_time_zone(text: str) -> bool:
    """Whether a schedule names a zone itself (`TZ=...`/`CRON_TZ=...`), which CronJob
    validation forbids in favour of spec.timeZone."""
    return isinstance(text, str) and ("TZ=" in text)


def load_zone(name: str) -> tzinfo:
    """An IANA zone by name; CronError("unknown time zone NAME") as Go's LoadLocation."""
    from zoneinfo import ZoneInfo

    if not isinstance(name, str) or not name or len(name) > 255 or "\x00" in name:
        raise CronError(f"unknown time zone {name}")
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, KeyError):
        raise CronError(f"unknown time zone {name}") from None
