"""Per-type limits: ``rate_limit`` and ``concurrency`` parsed at registration, and the one script that
admits deliveries against them in Valkey (a clock the test moves stands in for Valkey's own)."""

from __future__ import annotations

from itertools import pairwise

import msgspec
import pytest

from shared.errors import ConfigError
from shared.pipeline.registry import Registry, TaskType, parse_rate
from shared.store.keys import COUNTERS
from shared.store.limits import POLL, Admission, Answer, TypeLimits, running_key
from shared.store.store import Store
from tests.waiting import Clock


class Payload(msgspec.Struct):
    value: int = 0


def task_type(name: str, *, rate_limit: str | None = None, concurrency: int | None = None) -> TaskType:
    registry = Registry()

    @registry.task(name, timeout=2, rate_limit=rate_limit, concurrency=concurrency)
    async def handler(payload: Payload) -> None:
        return None

    found = registry.get(name)
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("10/s", 10.0), ("600/m", 10.0), ("0.5/s", 0.5), ("36/h", 0.01), ("1/m", 1 / 60), (" 2/s ", 2.0)],
)
def test_a_rate_is_tasks_per_second(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize(
    "text", ["10", "10/d", "ten/s", "0/s", "-1/s", "10 per s", "/s", "1e3/s", "10/S", ""]
)
def test_a_malformed_rate_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="'<number>/s', '/m' or '/h'"):
        parse_rate(text)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"rate_limit": "10/d"}, "rate_limit '10/d'"),
        ({"rate_limit": 10}, "rate_limit '10'"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 1.5}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
    ],
)
def test_a_malformed_limit_is_a_config_error_naming_the_type_and_the_setting(
    settings: dict[str, object], named: str
) -> None:
    registry = Registry()

    async def handler(payload: Payload) -> None:
        return None

    with pytest.raises(ConfigError) as raised:
        registry.task("geocode", **settings)(handler)  # type: ignore[arg-type]
    assert "task type 'geocode'" in str(raised.value)
    assert named in str(raised.value)


def test_a_type_keeps_its_limits_as_declared_for_display() -> None:
    limited = task_type("geocode", rate_limit="600/m", concurrency=2)
    assert (limited.rate_limit, limited.rate_per_second, limited.concurrency) == ("600/m", 10.0, 2)
    assert limited.limits() == {"rate_limit": "600/m", "concurrency": 2}
    assert limited.limited
    unlimited = task_type("echo")
    assert unlimited.limits() == {}
    assert not unlimited.limited


@pytest.fixture
def limits(store: Store, clock: Clock) -> TypeLimits:
    return TypeLimits(store.client, clock=clock, lease_margin=0)


def answers(found: list[Admission]) -> list[tuple[Answer, float]]:
    return [(a.answer, round(a.wait, 4)) for a in found]


async def test_a_rate_gives_turns_one_interval_apart_and_puts_off_what_is_past_the_hold(
    limits: TypeLimits, store: Store
) -> None:
    # Given a type limited to 10 a second
    rated = task_type("geocode", rate_limit="10/s")
    # When five deliveries ask at once, with up to a quarter second's wait allowed
    found = await limits.admit([(f"t-{i}", rated) for i in range(5)], hold=0.25)
    # Then three go, one interval apart, and the other two are put off, spread an interval apart
    assert answers(found) == [
        (Answer.GO, 0.0),
        (Answer.GO, 0.1),
        (Answer.GO, 0.2),
        (Answer.LATER, 0.05),  # back when its turn (0.3 s) is within the hold
        (Answer.LATER, 0.15),
    ]
    # And only those put off are counted as throttled
    counters = await store.client.hgetall(COUNTERS)
    assert (counters[b"throttled"], counters[b"throttled:geocode"]) == (b"2", b"2")


async def test_deliveries_put_off_in_separate_calls_come_back_apart(limits: TypeLimits) -> None:
    # Given a type limited to 10 a second whose next second is taken
    rated = task_type("geocode", rate_limit="10/s")
    await limits.admit([(f"t-{i}", rated) for i in range(11)], hold=1.0)
    # When two more deliveries ask one at a time (as two instances would)
    (first,) = await limits.admit([("t-11", rated)], hold=1.0)
    (second,) = await limits.admit([("t-12", rated)], hold=1.0)
    # Then they are put off to come back an interval apart, not at the same instant
    assert (first.answer, second.answer) == (Answer.LATER, Answer.LATER)
    assert second.wait - first.wait == pytest.approx(0.1, abs=1e-4)


async def test_the_rate_holds_over_ten_seconds(limits: TypeLimits, clock: Clock) -> None:
    # Given a type limited to 10 a second
    rated = task_type("geocode", rate_limit="10/s")
    starts: list[float] = []
    # When three deliveries ask every 50 ms for ten seconds, each starting at its turn
    for step in range(200):
        found = await limits.admit([(f"t-{step}-{i}", rated) for i in range(3)], hold=1.0)
        starts += [clock.now + a.wait for a in found if a.answer is Answer.GO]
        clock.now += 0.05
    # Then no ten-second window holds more than 10 x 10 + 1 starts, each an interval after the last
    starts.sort()
    assert max(sum(1 for s in starts if t <= s <= t + 10) for t in starts) <= 101
    assert min(b - a for a, b in pairwise(starts)) == pytest.approx(0.1, abs=1e-4)


async def test_concurrency_holds_and_a_refused_task_takes_no_turn_of_the_rate(limits: TypeLimits) -> None:
    # Given a type limited to 10 a second, one at a time, with one task running
    limited = task_type("geocode", rate_limit="10/s", concurrency=1)
    (running,) = await limits.admit([("t-1", limited)], hold=1.0)
    assert running == Admission(Answer.GO, 0.0)
    # When another asks while it runs
    (refused,) = await limits.admit([("t-2", limited)], hold=1.0)
    (past_hold,) = await limits.admit([("t-2", limited)], hold=POLL / 2)
    # Then it is told to look again shortly, or put off once that is past its hold
    assert refused == Admission(Answer.AGAIN, POLL)
    assert past_hold.answer is Answer.LATER
    # And once the first is released, the next takes the turn right after the first's: the refusals
    # took none
    await limits.release([("t-1", limited)])
    (after,) = await limits.admit([("t-3", limited)], hold=1.0)
    assert answers([after]) == [(Answer.GO, 0.1)]


async def test_a_slot_is_held_until_released(limits: TypeLimits, store: Store) -> None:
    # Given a type that runs two at a time, both slots taken
    pair = task_type("geocode", concurrency=2)
    assert [a.answer for a in await limits.admit([("t-1", pair), ("t-2", pair)], hold=1.0)] == [Answer.GO] * 2
    (full,) = await limits.admit([("t-3", pair)], hold=1.0)
    assert full.answer is Answer.AGAIN
    # When one is released
    await limits.release([("t-1", pair)])
    # Then the next goes at once, and the running set names who holds the slots
    (freed,) = await limits.admit([("t-3", pair)], hold=1.0)
    assert freed == Admission(Answer.GO, 0.0)
    assert set(await store.client.zrange(running_key("geocode"), 0, -1)) == {b"t-2", b"t-3"}


async def test_a_crashed_workers_slot_lapses_with_its_lease(limits: TypeLimits, clock: Clock) -> None:
    # Given a type that runs one at a time (timeout 2 s, no margin here), and a task that took the slot
    # and was never released
    single = task_type("geocode", concurrency=1)
    await limits.admit([("t-crashed", single)], hold=1.0)
    (before,) = await limits.admit([("t-2", single)], hold=1.0)
    assert before.answer is Answer.AGAIN
    # When its lease (start + timeout) has passed
    clock.now += 2.01
    # Then its slot is free again
    (after,) = await limits.admit([("t-2", single)], hold=1.0)
    assert after == Admission(Answer.GO, 0.0)


async def test_a_redelivered_task_takes_its_own_slot_back(limits: TypeLimits, store: Store) -> None:
    # Given a type that runs one at a time, and a task holding the slot (its worker gone)
    single = task_type("geocode", concurrency=1)
    await limits.admit([("t-1", single)], hold=1.0)
    # When the same task is delivered again
    (again,) = await limits.admit([("t-1", single)], hold=1.0)
    # Then it goes, still holding one slot
    assert again == Admission(Answer.GO, 0.0)
    assert await store.client.zcard(running_key("geocode")) == 1


async def test_types_in_one_call_keep_their_own_limits(limits: TypeLimits) -> None:
    slow = task_type("slow", rate_limit="1/s")
    single = task_type("single", concurrency=1)
    found = await limits.admit([("a-1", slow), ("b-1", single), ("a-2", slow), ("b-2", single)], hold=0.5)
    assert [a.answer for a in found] == [Answer.GO, Answer.GO, Answer.LATER, Answer.AGAIN]
