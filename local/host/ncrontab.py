"""Timer schedules as the Functions timer trigger reads them: NCRONTAB expressions and TimeSpans.

The trigger tries the expression as NCRONTAB first and as a TimeSpan second. NCRONTAB has six
fields, ``{second} {minute} {hour} {day} {month} {day-of-week}``; an expression of exactly five
fields is the classic form without seconds (second 0), as the extension also accepts. Each field
is ``*``, a value, a range ``a-b`` (reversed bounds are swapped, never wrapped), a step on any of
those (``*/15``, ``1-10/3``, ``5/20`` meaning 5 to the maximum), or a comma list of them. Months
and days of the week also take names, matched case-insensitively by prefix in calendar order
(``Ju`` is June); days of the week run 0-6 from Sunday (7 is rejected, as NCrontab does). Day of
month and day of week must both match (NCrontab ANDs them, unlike Vixie cron's OR).

Occurrences are computed on the wall clock of a time zone (UTC unless the caller says otherwise).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final

from local.host.errors import HostError
from local.host.settings import parse_timespan

MONTH_NAMES: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
DAY_NAMES: Final = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
# The longest month each month can have: an expression whose days never fit its months never fires.
_LONGEST_MONTH: Final = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_NUMBER = re.compile(r"\d+")
_STEP = re.compile(r"[+-]?\d+")  # .NET's int.Parse takes a sign; a step below 1 counts as 1


class ScheduleError(ValueError):
    """A schedule that is neither a valid NCRONTAB expression nor a TimeSpan.

    ``field`` names the NCRONTAB field at fault (``second`` ... ``day-of-week``) when there is one.
    """

    def __init__(self, expression: str, reason: str, field: str | None = None) -> None:
        super().__init__(
            f"The schedule expression '{expression}' was not recognized as a valid cron expression "
            f"or timespan string: {reason}"
        )
        self.expression = expression
        self.reason = reason
        self.field = field


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()

    def parse(self, text: str) -> frozenset[int]:
        """The values ``text`` selects; raises ``ValueError`` with the reason."""
        values: set[int] = set()
        for element in text.split(","):
            values |= self._element(element)
        return frozenset(values)

    def _element(self, text: str) -> set[int]:
        step = 1
        base = text
        stepped = "/" in text[1:]
        if stepped:
            base, _, step_text = text.partition("/")
            if not _STEP.fullmatch(step_text):
                raise ValueError(f"'{step_text}' is not a whole number step")
            step = max(int(step_text), 1)
        if base == "*":
            first, last = self.low, self.high
        elif "-" in base[1:]:
            start, _, end = base.partition("-")
            first, last = sorted((self._value(start), self._value(end)))
        else:
            first = self._value(base)
            last = self.high if stepped else first
        for bound in (first, last):
            if not self.low <= bound <= self.high:
                raise ValueError(f"{bound} is outside {self.low}-{self.high}")
        return set(range(first, last + 1, step))

    def _value(self, text: str) -> int:
        if not text:
            raise ValueError("a value cannot be empty")
        if _NUMBER.fullmatch(text):
            return int(text)
        folded = text.casefold()
        for index, name in enumerate(self.names):
            if name.casefold().startswith(folded):
                return self.low + index
        if self.names:
            raise ValueError(f"'{text}' is not a known name (use one of {', '.join(self.names)})")
        raise ValueError(f"'{text}' is not a number")


_FIELDS: Final = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day", 1, 31),
    _Field("month", 1, 12, MONTH_NAMES),
    _Field("day-of-week", 0, 6, DAY_NAMES),
)


@dataclass(frozen=True)
class CronSchedule:
    """An NCRONTAB schedule: each field's selected values, evaluated on ``tz``'s wall clock."""

    expression: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: tuple[int, ...]
    days_of_week: frozenset[int]
    tz: tzinfo = UTC
    #: What the host reports to the function as ``schedule["AdjustForDST"]``.
    adjust_for_dst: bool = True

    @property
    def sub_minute(self) -> bool:
        """More than one occurrence a minute: the host then turns schedule monitoring off."""
        return len(self.seconds) > 1 and (
            len(self.minutes) == 60
            and len(self.hours) == 24
            and len(self.days) == 31
            and len(self.months) == 12
            and len(self.days_of_week) == 7
        )

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after ``moment`` (aware), in ``tz``.

        Fractions of a second are dropped first, as NCrontab does. A wall-clock time skipped by a
        daylight-saving change happens that much later; a repeated one happens on its first pass.
        """
        if moment.tzinfo is None:
            raise ValueError("next_after needs an aware datetime")
        wall = moment.astimezone(self.tz).replace(tzinfo=None, microsecond=0)
        while True:
            wall = self._next_wall(wall + timedelta(seconds=1))
            candidate = wall.replace(tzinfo=self.tz)
            if candidate > moment:
                return candidate.astimezone(self.tz)

    def _next_wall(self, t: datetime) -> datetime:
        """The first naive wall-clock time at or after ``t`` that every field selects."""
        while True:
            if t.month not in self.months:
                month = _next_value(self.months, t.month)
                t = (
                    datetime(t.year, month, 1)
                    if month is not None
                    else datetime(t.year + 1, self.months[0], 1)
                )
                continue
            # datetime counts weekdays from Monday = 0; NCRONTAB from Sunday = 0.
            if t.day not in self.days or (t.weekday() + 1) % 7 not in self.days_of_week:
                t = _next_day(t)
                continue
            if t.hour not in self.hours:
                hour = _next_value(self.hours, t.hour)
                t = t.replace(hour=hour, minute=0, second=0) if hour is not None else _next_day(t)
                continue
            if t.minute not in self.minutes:
                minute = _next_value(self.minutes, t.minute)
                t = t.replace(minute=minute, second=0) if minute is not None else _next_hour(t)
                continue
            if t.second not in self.seconds:
                second = _next_value(self.seconds, t.second)
                t = t.replace(second=second) if second is not None else _next_minute(t)
                continue
            return t


@dataclass(frozen=True)
class ConstantSchedule:
    """A TimeSpan schedule: every ``interval`` from the previous occurrence."""

    expression: str
    interval: timedelta
    tz: tzinfo = UTC
    #: A constant interval ignores daylight saving, so the host reports ``False``.
    adjust_for_dst: bool = False

    @property
    def sub_minute(self) -> bool:
        return self.interval < timedelta(minutes=1)

    def next_after(self, moment: datetime) -> datetime:
        """``moment`` plus the interval (aware), in ``tz``."""
        if moment.tzinfo is None:
            raise ValueError("next_after needs an aware datetime")
        return (moment + self.interval).astimezone(self.tz)


Schedule = CronSchedule | ConstantSchedule


def parse_schedule(expression: str, tz: tzinfo = UTC) -> Schedule:
    """Parse ``expression`` as NCRONTAB, else as a TimeSpan; raise :class:`ScheduleError`."""
    tokens = [token for token in expression.split(" ") if token]
    if len(tokens) > 1:
        return parse_cron(expression, tz)
    return _parse_timespan(expression, tz)


def parse_cron(expression: str, tz: tzinfo = UTC) -> CronSchedule:
    """Parse a five- or six-field NCRONTAB expression (only spaces separate fields, as in NCrontab)."""
    tokens = [token for token in expression.split(" ") if token]
    if len(tokens) == 5:
        tokens = ["0", *tokens]
    elif len(tokens) != 6:
        raise ScheduleError(
            expression,
            f"it has {len(tokens)} fields; an NCRONTAB expression has 6 "
            "({second} {minute} {hour} {day} {month} {day-of-week})",
        )
    sets = []
    for field, token in zip(_FIELDS, tokens, strict=True):
        try:
            sets.append(field.parse(token))
        except ValueError as exc:
            raise ScheduleError(expression, f"the {field.name} field '{token}': {exc}", field.name) from exc
    seconds, minutes, hours, days, months, days_of_week = sets
    if not any(day <= _LONGEST_MONTH[month - 1] for month in months for day in days):
        raise ScheduleError(expression, "the day field selects no day that its months have", "day")
    return CronSchedule(
        expression,
        tuple(sorted(seconds)),
        tuple(sorted(minutes)),
        tuple(sorted(hours)),
        days,
        tuple(sorted(months)),
        days_of_week,
        tz,
    )


def _parse_timespan(expression: str, tz: tzinfo) -> ConstantSchedule:
    text = expression.strip()
    # .NET's TimeSpan also reads "hh:mm" and a bare number of days; parse_timespan wants seconds.
    if re.fullmatch(r"\d+", text):
        text = f"{text}.00:00:00"
    elif re.fullmatch(r"(?:\d+\.)?\d{1,2}:\d{1,2}", text):
        text = f"{text}:00"
    try:
        seconds = parse_timespan(text)
    except HostError as exc:
        raise ScheduleError(expression, str(exc)) from exc
    if seconds <= 0:
        raise ScheduleError(expression, "a TimeSpan schedule must be longer than zero")
    return ConstantSchedule(expression, timedelta(seconds=seconds), tz)


def _next_value(values: tuple[int, ...], current: int) -> int | None:
    """The smallest value above ``current``, or ``None`` (the caller carries to the next unit)."""
    index = bisect.bisect_right(values, current)
    return values[index] if index < len(values) else None


def _next_day(t: datetime) -> datetime:
    return datetime(t.year, t.month, t.day) + timedelta(days=1)


def _next_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0) + timedelta(hours=1)


def _next_minute(t: datetime) -> datetime:
    return t.replace(second=0) + timedelta(minutes=1)
