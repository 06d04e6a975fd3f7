"""Fleet-wide limits per task type: how many run at once, and how many start per second.

One script decides a whole batch of deliveries atomically, in one round trip, against state every
instance shares:

* ``tl:running:{type}``: who holds a concurrency slot, scored by when the slot lapses on its own (the
  task's start + its timeout + :data:`LEASE_MARGIN`), so a crashed worker's slot frees itself;
* ``tl:type-rate:{type}``: the type's next free turn, a generic cell rate algorithm with a burst of
  one: each start takes the turn after the one before, one interval apart, whichever instance asks;
* ``tl:type-returns:{type}``: the last return time handed to a delivery that was put off, so those
  put off come back one interval apart, fleet-wide, instead of all at the same instant.

A delivery whose turn is at most ``hold`` seconds away is admitted, and waits for it in process: a
broker's delays are coarse (RabbitMQ's shortest wait queue holds a message 1 s, and a wait under 0.5 s
is sent straight back), so a turn a tenth of a second away would otherwise be missed, or spun for
through the broker. When every slot is taken, a delivery may look again within the hold. Past it, the
delivery is put off for the wait the script gives, and counted in ``tl:counters`` as ``throttled`` and
``throttled:{type}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import valkey.asyncio as valkey
from valkey.exceptions import ValkeyError

from shared.errors import StoreError
from shared.pipeline.registry import TaskType
from shared.store.batching import Coalescer, Script
from shared.store.keys import COUNTERS, P

log = logging.getLogger(__name__)

#: How long past its timeout a running task keeps its slot: the handler is cancelled at its timeout,
#: and the margin covers its start waiting out a Valkey outage (the processor's 20 s patience).
LEASE_MARGIN = 30.0
#: When every slot is taken, look again after this long (a running task's end is not announced).
POLL = 0.25
#: How far apart the returns of put-off deliveries of a type without a rate limit are spread.
CONCURRENCY_STEP = 0.1
#: At most one INFO line per task type this often, however many deliveries are put off.
LOG_EVERY = 10.0


def running_key(task_type: str) -> str:
    return f"{P}running:{task_type}"


def rate_key(task_type: str) -> str:
    return f"{P}type-rate:{task_type}"


def returns_key(task_type: str) -> str:
    return f"{P}type-returns:{task_type}"


# Burst one: turns are one interval apart from the first, so any window of T seconds holds at most
# rate * T + 1 starts (101 in 10 s at 10/s, inside the promised 10 %; a service counting per second sees
# at most rate + 1). A larger burst would let that many start at once after a quiet spell: a burst of one
# second's worth already reaches the 10 % over 10 s, and more than a per-second limit in one second. The
# hold, not a burst, is what keeps the rate reachable while deliveries arrive unevenly.
#
# KEYS: counters, then per type its running set, its next turn and its last return. ARGV: now ('' for
# Valkey's own clock, which every instance shares), hold, poll, then per type: its name, concurrency
# (0 for none), lease (s), interval (s, 0 for no rate), return spacing (s), how many tasks, their ids.
# Returns per task its answer ('go', 'again' or 'later') and its wait as text (a Lua number would be
# cut to an integer).
_ADMIT = """
local now = tonumber(ARGV[1])
if not now then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
end
local hold, poll = tonumber(ARGV[2]), tonumber(ARGV[3])
local found = {}
local at = 4
for first = 2, #KEYS, 3 do
  local running, rate, returns = KEYS[first], KEYS[first + 1], KEYS[first + 2]
  local task_type, concurrency = ARGV[at], tonumber(ARGV[at + 1])
  local lease, interval, step = tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4])
  local count = tonumber(ARGV[at + 5])
  local busy = 0
  if concurrency > 0 then
    -- Slots whose lease lapsed belong to tasks that are gone.
    redis.call('ZREMRANGEBYSCORE', running, '-inf', now)
    busy = redis.call('ZCARD', running)
  end
  local turn_at = math.max(tonumber(redis.call('GET', rate) or '0'), now)
  local last = tonumber(redis.call('GET', returns) or '0')
  local again, put_off = 0, 0
  local function later(earliest)
    last = math.max(last + step, earliest)
    put_off = put_off + 1
    return {'later', string.format('%.6f', last - now)}
  end
  for i = 1, count do
    local id = ARGV[at + 5 + i]
    -- A task holds one slot at most: a redelivery (its worker gone) takes its own slot back.
    local holds = concurrency > 0 and redis.call('ZSCORE', running, id)
    local answer
    if concurrency > 0 and not holds and busy >= concurrency then
      -- Checked first, so a task that may not run takes no turn of the rate.
      local wait = poll + again * step
      if wait <= hold then
        again = again + 1
        answer = {'again', string.format('%.6f', wait)}
      else
        answer = later(now + hold)
      end
    else
      local turn = now
      if interval > 0 then turn = turn_at end
      if turn - now > hold then
        answer = later(turn - hold)
      else
        if interval > 0 then turn_at = turn + interval end
        if concurrency > 0 then
          redis.call('ZADD', running, turn + lease, id)
          if not holds then busy = busy + 1 end
        end
        answer = {'go', string.format('%.6f', turn - now)}
      end
    end
    found[#found + 1] = answer[1]
    found[#found + 1] = answer[2]
  end
  if interval > 0 and turn_at > now then
    redis.call('SET', rate, string.format('%.6f', turn_at), 'PX', math.ceil((turn_at - now) * 1000) + 1)
  end
  if put_off > 0 then
    redis.call('SET', returns, string.format('%.6f', last), 'PX', math.ceil((last - now) * 1000) + 1)
    redis.call('HINCRBY', KEYS[1], 'throttled', put_off)
    redis.call('HINCRBY', KEYS[1], 'throttled:' .. task_type, put_off)
  end
  at = at + 6 + count
end
return found
"""
ADMIT = Script(_ADMIT)


class Answer(StrEnum):
    """What a delivery of a limited type is told."""

    #: Its turn: it may start in ``wait`` seconds (at most the hold), and holds a slot until released.
    GO = "go"
    #: Every slot is taken: ask again in ``wait`` seconds (within the hold).
    AGAIN = "again"
    #: Over its limits past the hold: put it off for ``wait`` seconds (counted as throttled).
    LATER = "later"


@dataclass(frozen=True, slots=True)
class Admission:
    answer: Answer
    wait: float


class TypeLimits:
    """Admits deliveries of limited task types against the fleet-wide state in Valkey."""

    def __init__(
        self,
        client: valkey.Valkey,
        *,
        clock: Callable[[], float] | None = None,
        lease_margin: float = LEASE_MARGIN,
    ) -> None:
        """``clock`` (epoch s) stands in for Valkey's own, for tests that move time."""
        self._batched = Coalescer(client, (ADMIT,))
        self._clock = clock
        self._lease_margin = lease_margin
        self._put_off: dict[str, tuple[float, int]] = {}

    async def admit(self, tasks: Sequence[tuple[str, TaskType]], hold: float) -> list[Admission]:
        """An answer for each ``(task id, type)``, in order; the types must have limits.

        A task may be admitted with its turn at most ``hold`` seconds away; one round trip for all.
        """
        by_type: dict[str, list[int]] = {}
        for index, (_, task_type) in enumerate(tasks):
            by_type.setdefault(task_type.name, []).append(index)
        keys: list[str] = [COUNTERS]
        args: list[Any] = ["" if self._clock is None else self._clock(), hold, POLL]
        for name, indexes in by_type.items():
            task_type = tasks[indexes[0]][1]
            interval = 1.0 / task_type.rate_per_second if task_type.rate_per_second else 0.0
            keys += [running_key(name), rate_key(name), returns_key(name)]
            args += [
                name,
                task_type.concurrency or 0,
                task_type.timeout + self._lease_margin,
                interval,
                interval or CONCURRENCY_STEP,
                len(indexes),
                *(tasks[i][0] for i in indexes),
            ]
        (reply,) = await self._send([ADMIT.command(keys, args)])
        words = [r.decode() if isinstance(r, bytes) else str(r) for r in reply]
        # The answers come type by type; put them back in the order asked.
        order = [i for indexes in by_type.values() for i in indexes]
        found = {i: Admission(Answer(words[2 * n]), float(words[2 * n + 1])) for n, i in enumerate(order)}
        admissions = [found[i] for i in range(len(tasks))]
        self._report([(t.name, a) for (_, t), a in zip(tasks, admissions, strict=True)])
        return admissions

    async def release(self, tasks: Sequence[tuple[str, TaskType]]) -> None:
        """Give back the concurrency slots of tasks that were admitted (one round trip)."""
        by_type: dict[str, list[str]] = {}
        for task_id, task_type in tasks:
            if task_type.concurrency is not None:
                by_type.setdefault(task_type.name, []).append(task_id)
        if by_type:
            await self._send([("ZREM", running_key(name), *ids) for name, ids in by_type.items()])

    async def _send(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        try:
            return await self._batched.run(commands)
        except (ValkeyError, OSError) as exc:
            raise StoreError(f"Valkey did not answer the task type limits: {exc}") from exc

    def _report(self, answers: Sequence[tuple[str, Admission]]) -> None:
        """At most one INFO line per type every :data:`LOG_EVERY` seconds, counting the put-offs since
        the last one (each is in the ``throttled`` counters too)."""
        now = time.monotonic()
        for name, admission in answers:
            if admission.answer is not Answer.LATER:
                continue
            logged_at, count = self._put_off.get(name, (now - LOG_EVERY, 0))
            if now - logged_at < LOG_EVERY:
                self._put_off[name] = (logged_at, count + 1)
                continue
            log.info(
                "Task type %s is over its limits: %d put off since its last such line, the latest by %.1fs",
                name,
                count + 1,
                admission.wait,
            )
            self._put_off[name] = (now, 0)
