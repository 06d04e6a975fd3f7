"""Delayed tasks: ``delay`` or ``not_before`` on a task; ``scheduled`` until due, then run, never before."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.errors import ValidationError
from shared.pipeline.registry import MAX_DELAY_SECONDS
from shared.pipeline.submission import parse_submission
from shared.tasks import registry
from tests.hosting import RunningHost
from tests.waiting import eventually

NOW = 1_800_000_000.0


def parsed(item: dict[str, object]) -> float | None:
    (envelope,) = parse_submission(_json(item), registry, now=NOW).envelopes
    return envelope.not_before


def _json(item: dict[str, object]) -> bytes:
    return json.dumps(item).encode()


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"type": "echo"}, None),
        ({"type": "echo", "delay": 30}, NOW + 30),
        ({"type": "echo", "delay": 0}, None),
        ({"type": "echo", "not_before": datetime.fromtimestamp(NOW + 90, UTC).isoformat()}, NOW + 90),
        ({"type": "echo", "not_before": "2020-01-01T00:00:00Z"}, None),  # in the past: at once
    ],
)
def test_when_a_task_may_run(item: dict[str, object], expected: float | None) -> None:
    assert parsed(item) == expected


@pytest.mark.parametrize(
    ("item", "field", "words"),
    [
        ({"type": "echo", "delay": -1}, "delay", "seconds from 0"),
        ({"type": "echo", "delay": MAX_DELAY_SECONDS + 1}, "delay", "7 days"),
        ({"type": "echo", "delay": "soon"}, "delay", "seconds from 0"),
        ({"type": "echo", "delay": 5, "not_before": "2030-01-01T00:00:00Z"}, "delay", "not both"),
        ({"type": "echo", "not_before": "tomorrow"}, "not_before", "RFC 3339"),
        ({"type": "echo", "not_before": "2030-01-01T00:00:00"}, "not_before", "offset"),
        ({"type": "echo", "not_before": "2099-01-01T00:00:00Z"}, "not_before", "7 days"),
    ],
)
def test_a_bad_delay_is_a_400_naming_the_field(item: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_submission(_json(item), registry, now=NOW)
    (error,) = raised.value.errors
    assert error.field == field
    assert words in error.message


def test_a_delayed_task_is_scheduled_until_due_then_runs(host: RunningHost) -> None:
    # Given a task submitted to run in two seconds
    with host.client() as http:
        response = http.post("/api/tasks", json={"type": "echo", "payload": {"message": "later"}, "delay": 2})
    assert response.status_code == 202
    queued = response.json()
    assert queued["status"] == "scheduled"
    due = datetime.fromisoformat(queued["due_at"]).timestamp()

    # When it is read before it is due, it is scheduled, with its due time
    with host.client() as http:
        early = http.get(f"/api/tasks/{queued['id']}").json()
    assert (early["status"], early["due_at"]) == ("scheduled", queued["due_at"])

    # Then it runs once it is due, not before
    def finished() -> dict[str, object] | None:
        with host.client() as http:
            found = http.get(f"/api/tasks/{queued['id']}").json()
        return found if found["status"] == "succeeded" else None

    eventually(finished, within=15)
    done = finished()
    assert done is not None
    assert done["result"] == "later"
    assert done["attempts"] == 1
    started = datetime.fromisoformat(str(done["started_at"])).timestamp()
    assert started >= due - 0.5
