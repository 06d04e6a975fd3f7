"""A small, bounded load against a running host, and the tally of what became of it.

:class:`Load` posts single tasks from a few threads at a steady rate and keeps every answer;
:func:`settle` reads each accepted task's status and attempts straight from Valkey until all are
finished; :class:`Row` is one line of the failure-semantics table the suite prints at its end.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import valkey

from tests.hosting import RunningHost

#: The measured rows, in the order the scenarios ran; printed at the end of the session (conftest).
ROWS: list[Row] = []

FINISHED = {"succeeded", "dead-lettered"}


def sleep_task(seconds: float = 0.05) -> dict[str, object]:
    return {"type": "sleep", "payload": {"seconds": seconds}}


@dataclass(frozen=True)
class Answer:
    """One POST: its status (0 when no HTTP answer came, ``error`` says why), how long it took,
    Retry-After, task ids."""

    status: int
    seconds: float
    retry_after: str | None
    ids: tuple[str, ...]
    error: str = ""


class Load:
    """Posts ``count`` tasks, one per request, at ``per_second`` from ``threads`` threads."""

    def __init__(
        self,
        host: RunningHost,
        count: int,
        per_second: float,
        *,
        task: dict[str, object] | None = None,
        threads: int = 4,
        timeout: float = 15.0,
    ) -> None:
        self.host = host
        self.count = count
        self.per_second = per_second
        self.task = task or sleep_task()
        self.timeout = timeout
        self.answers: list[Answer] = []
        self._next = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._post_all, daemon=True) for _ in range(threads)]
        self._started = 0.0

    def start(self) -> Load:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def join(self, timeout: float = 60.0) -> Load:
        for thread in self._threads:
            thread.join(timeout)
        return self

    def run(self) -> Load:
        return self.start().join()

    @property
    def accepted_ids(self) -> list[str]:
        return [task_id for answer in self.answers if answer.status == 202 for task_id in answer.ids]

    def statuses(self) -> Counter[int]:
        return Counter(answer.status for answer in self.answers)

    def errors(self) -> Counter[str]:
        """Why requests got no HTTP answer: ``ConnectError`` (nothing listening) or a dropped one."""
        return Counter(answer.error for answer in self.answers if answer.status == 0)

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.count:
                return None
            self._next += 1
            return self._next - 1

    def _post_all(self) -> None:
        with self.host.client() as client:
            client.timeout = httpx.Timeout(self.timeout)
            while (index := self._take()) is not None:
                due = self._started + index / self.per_second
                time.sleep(max(0.0, due - time.monotonic()))
                self.answers.append(self._post(client))

    def _post(self, client: httpx.Client) -> Answer:
        began = time.monotonic()
        try:
            response = client.post("/api/tasks", json=self.task)
        except httpx.TransportError as exc:
            return Answer(0, time.monotonic() - began, None, (), type(exc).__name__)
        took = time.monotonic() - began
        ids = (response.json()["id"],) if response.status_code == 202 else ()
        return Answer(response.status_code, took, response.headers.get("retry-after"), ids)


def _client(valkey_url: str) -> Any:
    """A blocking Valkey client (its stubs type every reply as maybe-awaitable; these are not)."""
    return valkey.Valkey.from_url(valkey_url)


def task_states(valkey_url: str, ids: list[str]) -> dict[str, tuple[str, int]]:
    """Each task's status and attempts as Valkey has them (``missing`` when it has no record)."""
    client = _client(valkey_url)
    try:
        pipe = client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(f"tl:task:{task_id}", "status", "attempts")
        found = {}
        for task_id, (status, attempts) in zip(ids, pipe.execute(), strict=True):
            found[task_id] = ((status or b"missing").decode(), int(attempts or 0))
        return found
    finally:
        client.close()


def counters(valkey_url: str) -> dict[str, int]:
    """Valkey's ``tl:counters`` (accepted, processed, failed, dead_lettered...)."""
    client = _client(valkey_url)
    try:
        return {k.decode(): int(v) for k, v in client.hgetall("tl:counters").items()}
    finally:
        client.close()


def submitted_at(valkey_url: str, task_id: str) -> float:
    """When the task was accepted (epoch s), as its envelope says."""
    client = _client(valkey_url)
    try:
        return float(client.hget(f"tl:task:{task_id}", "submitted_at"))
    finally:
        client.close()


def settle(valkey_url: str, ids: list[str], within: float = 30.0) -> dict[str, tuple[str, int]]:
    """Poll until every task is finished (or ``within`` passes); the states last read."""
    deadline = time.monotonic() + within
    while True:
        states = task_states(valkey_url, ids)
        if all(status in FINISHED for status, _ in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


@dataclass
class Row:
    """One scenario's measured outcome; ``lost`` = accepted - succeeded - dead-lettered on purpose."""

    scenario: str
    accepted: int
    succeeded: int
    dead_lettered: int = 0
    duplicates: int = 0
    #: Successes Valkey counted beyond one per accepted task: a task recorded as succeeded twice, or
    #: one no client was given a 202 for (a publish that timed out, yet arrived).
    extra_successes: int = 0
    answered_503: int = 0
    other_5xx: int = 0
    no_answer: int = 0
    slowest_answer: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.accepted - self.succeeded - self.dead_lettered

    @classmethod
    def measure(
        cls, scenario: str, load: Load | None, states: dict[str, tuple[str, int]], *, processed: int
    ) -> Row:
        """The row for ``states`` (accepted tasks) and ``load``'s answers; ``processed`` is Valkey's
        success counter, so a task recorded as succeeded twice counts as a duplicate too."""
        succeeded = [attempts for status, attempts in states.values() if status == "succeeded"]
        answers = load.answers if load else []
        row = cls(
            scenario,
            accepted=len(states),
            succeeded=len(succeeded),
            dead_lettered=sum(status == "dead-lettered" for status, _ in states.values()),
            duplicates=sum(a - 1 for a in succeeded),
            extra_successes=processed - len(succeeded),
            answered_503=sum(a.status == 503 for a in answers),
            other_5xx=sum(a.status >= 500 and a.status != 503 for a in answers),
            no_answer=sum(a.status == 0 for a in answers),
            slowest_answer=max((a.seconds for a in answers), default=0.0),
        )
        ROWS.append(row)
        return row

    def __str__(self) -> str:
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        return (
            f"{self.scenario}: accepted {self.accepted}, succeeded {self.succeeded}, dead-lettered "
            f"{self.dead_lettered}, lost {self.lost}, duplicate runs {self.duplicates}, extra successes "
            f"{self.extra_successes}, 503 "
            f"{self.answered_503}, other 5xx {self.other_5xx}, unanswered {self.no_answer}, slowest "
            f"answer {self.slowest_answer:.1f}s{notes}"
        )


TABLE_HEADER = (
    "| scenario | accepted (202) | succeeded | dead-lettered | lost | duplicate runs | extra successes "
    "| 503 | other 5xx / no answer | slowest answer |"
)


def table_line(row: Row) -> str:
    return (
        f"| {row.scenario} | {row.accepted} | {row.succeeded} | {row.dead_lettered} | {row.lost} | "
        f"{row.duplicates} | {row.extra_successes} | {row.answered_503} | {row.other_5xx + row.no_answer} | "
        f"{row.slowest_answer:.1f} s |"
    )
