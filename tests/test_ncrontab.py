"""NCRONTAB and TimeSpan schedules: parsing, errors and next occurrences, from tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from local.host.ncrontab import ConstantSchedule, CronSchedule, ScheduleError, parse_schedule

ALL_SECONDS = tuple(range(60))
ALL_HOURS = tuple(range(24))
ALL_DAYS = frozenset(range(1, 32))
ALL_MONTHS = tuple(range(1, 13))
ALL_WEEKDAYS = frozenset(range(7))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "field", "expected"),
    [
        ("*/15 * * * * *", "seconds", (0, 15, 30, 45)),
        ("5/20 * * * * *", "seconds", (5, 25, 45)),  # a value with a step runs to the maximum
        ("*/70 * * * * *", "seconds", (0,)),  # a step past the range keeps the first value
        ("*/0 * * * * *", "seconds", ALL_SECONDS),  # a step below 1 counts as 1
        ("0-59 * * * * *", "seconds", ALL_SECONDS),
        ("1,2,10-12 * * * * *", "seconds", (1, 2, 10, 11, 12)),
        ("0 0 17-9 * * *", "hours", tuple(range(9, 18))),  # reversed bounds are swapped, not wrapped
        ("0 0 9-17/4 * * *", "hours", (9, 13, 17)),
        ("0 0 0 */10 * *", "days", frozenset({1, 11, 21, 31})),
        ("0 0 0 1 */2 *", "months", (1, 3, 5, 7, 9, 11)),
        ("0 0 0 1 Jan,jul *", "months", (1, 7)),
        ("0 0 0 1 Ju *", "months", (6,)),  # a name prefix takes the first month it fits
        ("0 0 0 1 february-APRIL *", "months", (2, 3, 4)),
        ("0 0 0 * * Mon-Fri", "days_of_week", frozenset({1, 2, 3, 4, 5})),
        ("0 0 0 * * Sun,6", "days_of_week", frozenset({0, 6})),
        ("*/5 * * * *", "seconds", (0,)),  # five fields: the classic form, at second 0
        ("*/5 * * * *", "minutes", (0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55)),
        ("  0   30  9 * * *  ", "minutes", (30,)),  # runs of spaces separate fields
    ],
)
def test_fields_select_the_values_ncrontab_selects(expression: str, field: str, expected: object) -> None:
    # Given an NCRONTAB expression / When it is parsed
    schedule = parse_schedule(expression)

    # Then the field holds exactly the values NCrontab would set
    assert isinstance(schedule, CronSchedule)
    assert getattr(schedule, field) == expected


@pytest.mark.parametrize(
    ("expression", "field", "reason"),
    [
        ("60 * * * * *", "second", "60 is outside 0-59"),
        ("* 60 * * * *", "minute", "60 is outside 0-59"),
        ("* * 24 * * *", "hour", "24 is outside 0-23"),
        ("* * * 0 * *", "day", "0 is outside 1-31"),
        ("* * * * 13 *", "month", "13 is outside 1-12"),
        ("* * * * * 7", "day-of-week", "7 is outside 0-6"),  # NCrontab has no 7 for Sunday
        ("* * * * Foo *", "month", "'Foo' is not a known name"),
        ("* * * * * Funday", "day-of-week", "'Funday' is not a known name"),
        ("x * * * * *", "second", "'x' is not a number"),
        ("1,,2 * * * * *", "second", "a value cannot be empty"),
        ("1- * * * * *", "second", "a value cannot be empty"),
        ("1-2-3 * * * * *", "second", "'2-3' is not a number"),
        ("*/x * * * * *", "second", "'x' is not a whole number step"),
        ("0 0 0 30 2 *", "day", "selects no day that its months have"),
        ("0 0 0 31 4,6 *", "day", "selects no day that its months have"),
        ("* * * *", None, "it has 4 fields"),
        ("* * * * * * *", None, "it has 7 fields"),
        ("0\t0 * * * *", "minute", "is not a number"),  # a tab is no separator: "0\t0" is one field
    ],
)
def test_bad_cron_expressions_name_the_field_at_fault(
    expression: str, field: str | None, reason: str
) -> None:
    # Given a malformed expression / When it is parsed / Then the error says which field and why
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(expression)

    assert caught.value.field == field
    assert reason in str(caught.value)
    assert f"'{expression}' was not recognized" in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("bogus", "is not a TimeSpan"),
        ("00:00:00", "longer than zero"),
        ("", "is not a TimeSpan"),
    ],
)
def test_bad_timespans_are_rejected(expression: str, reason: str) -> None:
    with pytest.raises(ScheduleError, match=reason):
        parse_schedule(expression)


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        (
            "*/30 * * * * *",
            utc(2024, 1, 1, 0, 0, 10),
            [utc(2024, 1, 1, 0, 0, 30), utc(2024, 1, 1, 0, 1), utc(2024, 1, 1, 0, 1, 30)],
        ),
        # strictly after: an occurrence at the start itself is not returned
        ("0 0 * * * *", utc(2024, 1, 1, 10), [utc(2024, 1, 1, 11), utc(2024, 1, 1, 12)]),
        # fractions of a second are dropped first, as NCrontab does
        (
            "* * * * * *",
            utc(2024, 1, 1, 0, 0, 0) + timedelta(microseconds=500_000),
            [utc(2024, 1, 1, 0, 0, 1), utc(2024, 1, 1, 0, 0, 2)],
        ),
        # weekdays: Friday 1 March 2024 after 09:30 goes to Monday
        (
            "0 30 9 * * 1-5",
            utc(2024, 3, 1, 10),
            [utc(2024, 3, 4, 9, 30), utc(2024, 3, 5, 9, 30)],
        ),
        # day of month AND day of week: Friday the 13th
        ("0 0 12 13 * Fri", utc(2024, 1, 1), [utc(2024, 9, 13, 12), utc(2024, 12, 13, 12)]),
        # 29 February: the next leap year
        ("0 0 0 29 2 *", utc(2024, 3, 1), [utc(2028, 2, 29), utc(2032, 2, 29)]),
        # the 31st skips the months that have none
        ("0 0 0 31 * *", utc(2024, 1, 31), [utc(2024, 3, 31), utc(2024, 5, 31), utc(2024, 7, 31)]),
        # the end of a year carries into the next
        ("59 59 23 31 12 *", utc(2024, 12, 31, 23, 59, 59), [utc(2025, 12, 31, 23, 59, 59)]),
        # five fields: every 15 minutes at second 0
        ("*/15 * * * *", utc(2024, 1, 1, 0, 7, 30), [utc(2024, 1, 1, 0, 15), utc(2024, 1, 1, 0, 30)]),
        # a TimeSpan counts from the moment given
        ("00:05:00", utc(2024, 1, 1, 0, 0, 7), [utc(2024, 1, 1, 0, 5, 7), utc(2024, 1, 1, 0, 10, 7)]),
        ("01:30", utc(2024, 1, 1), [utc(2024, 1, 1, 1, 30)]),  # hh:mm, as .NET reads it
        ("1.00:00:00", utc(2024, 1, 1), [utc(2024, 1, 2)]),
        ("2", utc(2024, 1, 1), [utc(2024, 1, 3)]),  # a bare number is days, as .NET reads it
    ],
)
def test_next_occurrences(expression: str, start: datetime, expected: list[datetime]) -> None:
    # Given a schedule / When occurrences are chained from a start
    schedule = parse_schedule(expression)
    occurrences = []
    moment = start
    for _ in expected:
        moment = schedule.next_after(moment)
        occurrences.append(moment)

    # Then they are the expected instants
    assert occurrences == expected


BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("expression", "start", "expected_utc"),
    [
        # 02:30 does not exist on 31 March 2024 in Berlin: it happens an hour later (03:30 CEST)
        (
            "0 30 2 * * *",
            datetime(2024, 3, 30, 12, tzinfo=BERLIN),
            [utc(2024, 3, 31, 1, 30), utc(2024, 4, 1, 0, 30)],
        ),
        # 02:30 happens twice on 27 October 2024: the schedule runs on the first pass only
        (
            "0 30 2 * * *",
            datetime(2024, 10, 26, 12, tzinfo=BERLIN),
            [utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)],
        ),
        # 09:00 local is 08:00 UTC in winter and 07:00 UTC in summer
        ("0 0 9 * * *", datetime(2024, 3, 30, 10, tzinfo=BERLIN), [utc(2024, 3, 31, 7), utc(2024, 4, 1, 7)]),
    ],
)
def test_a_time_zone_schedules_on_its_wall_clock(
    expression: str, start: datetime, expected_utc: list[datetime]
) -> None:
    schedule = parse_schedule(expression, BERLIN)
    occurrences = []
    moment = start
    for _ in expected_utc:
        moment = schedule.next_after(moment)
        occurrences.append(moment.astimezone(UTC))

    assert occurrences == expected_utc


@pytest.mark.parametrize(
    ("expression", "sub_minute"),
    [
        ("* * * * * *", True),
        ("*/30 * * * * *", True),
        ("0,30 * * * * *", True),
        ("0 * * * * *", False),  # once a minute
        ("*/10 */2 * * * *", False),  # a restricted minute field can leave gaps longer than a minute
        ("* * * * *", False),  # five fields fire at second 0 only
        ("00:00:30", True),
        ("00:01:00", False),
    ],
)
def test_sub_minute_schedules_are_recognised(expression: str, sub_minute: bool) -> None:
    assert parse_schedule(expression).sub_minute is sub_minute


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_schedule("* * * * * *").next_after(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="aware"):
        parse_schedule("00:01:00").next_after(datetime(2024, 1, 1))


def test_adjust_for_dst_is_reported_as_the_host_does() -> None:
    assert parse_schedule("0 * * * * *").adjust_for_dst is True
    assert isinstance(parse_schedule("00:10:00"), ConstantSchedule)
    assert parse_schedule("00:10:00").adjust_for_dst is False


def _subset(low: int, high: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(low, high), min_size=1, max_size=4, unique=True)


@st.composite
def cron_expressions(draw: st.DrawFn) -> str:
    """Six fields, each ``*`` or a list of values, with days that some chosen month has."""
    fields = []
    for low, high in ((0, 59), (0, 59), (0, 23), (1, 28), (1, 12), (0, 6)):
        wildcard = draw(st.booleans())
        fields.append("*" if wildcard else ",".join(map(str, draw(_subset(low, high)))))
    return " ".join(fields)


def _day_scan(schedule: CronSchedule, moment: datetime) -> datetime:
    """A slow, obviously right search for the next occurrence, day by day (UTC schedules only)."""
    start = moment.replace(microsecond=0)
    day = start.replace(hour=0, minute=0, second=0)
    while True:
        if (
            day.month in schedule.months
            and day.day in schedule.days
            and (day.weekday() + 1) % 7 in schedule.days_of_week
        ):
            for hour in schedule.hours:
                for minute in schedule.minutes:
                    for second in schedule.seconds:
                        candidate = day.replace(hour=hour, minute=minute, second=second)
                        if candidate > start:
                            return candidate
        day += timedelta(days=1)


@given(
    expression=cron_expressions(),
    moment=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
def test_next_after_is_the_first_matching_second_strictly_after(expression: str, moment: datetime) -> None:
    schedule = parse_schedule(expression)
    assert isinstance(schedule, CronSchedule)

    occurrence = schedule.next_after(moment)

    assert occurrence > moment
    assert occurrence.microsecond == 0
    assert occurrence.second in schedule.seconds
    assert occurrence.minute in schedule.minutes
    assert occurrence.hour in schedule.hours
    assert occurrence.day in schedule.days
    assert occurrence.month in schedule.months
    assert (occurrence.weekday() + 1) % 7 in schedule.days_of_week
    assert occurrence == _day_scan(schedule, moment)
