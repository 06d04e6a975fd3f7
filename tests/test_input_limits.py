"""Bodies nested too deep answer 400 naming the limit, at any depth, never a server error."""

from __future__ import annotations

import json

import pytest

from shared.errors import ValidationError
from shared.pipeline.submission import MAX_JSON_DEPTH, parse_submission
from shared.tasks import registry
from tests.conftest import require_service
from tests.hosting import start_host


def _nested(depth: int) -> str:
    """Arrays nested ``depth`` levels deep."""
    return "[" * depth + "]" * depth


def _in_message(levels: int) -> str:
    """An echo task whose message holds arrays nested ``levels`` deep (the task adds 2 levels)."""
    return '{"type": "echo", "payload": {"message": ' + _nested(levels) + "}}"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(_nested(1_000), id="bare arrays, past the decoder's own stack"),
        pytest.param(_nested(100_000), id="bare arrays, far past it"),
        pytest.param(_nested(MAX_JSON_DEPTH + 1), id="bare arrays, one past the limit"),
        pytest.param(_in_message(1_000), id="inside a payload, past the decoder's stack"),
        pytest.param(_in_message(MAX_JSON_DEPTH - 1), id="inside a payload, one past the limit"),
        pytest.param("[" + _in_message(MAX_JSON_DEPTH - 2) + "]", id="inside a batch, one past the limit"),
    ],
)
def test_a_body_nested_too_deep_is_refused_naming_the_limit(raw: str) -> None:
    # Given a body nested past the limit / When it is submitted
    with pytest.raises(ValidationError) as caught:
        parse_submission(raw.encode(), registry)

    # Then the one error names the body and the limit
    assert [e.as_dict() for e in caught.value.errors] == [
        {"field": "body", "message": f"nested deeper than {MAX_JSON_DEPTH} levels"}
    ]


def test_a_body_nested_to_the_limit_is_accepted() -> None:
    # Given an echo task nested exactly to the limit, with brackets in strings besides
    raw = '{"type": "echo", "payload": {"message": [' + '"[{",' * 80 + _nested(MAX_JSON_DEPTH - 3) + "]}}"

    # When it is submitted / Then it is one valid task carrying its message whole
    (envelope,) = parse_submission(raw.encode(), registry).envelopes
    assert envelope.payload["message"] == json.loads(raw)["payload"]["message"]


def test_the_host_answers_400_to_a_deeply_nested_task() -> None:
    require_service("rabbitmq")
    # Given the app running under the host
    host = start_host()
    try:
        # When a task nests its message 1,000 levels deep
        with host.client() as client:
            response = client.post(
                "/api/tasks", content=_in_message(1_000), headers={"content-type": "application/json"}
            )
    finally:
        host.stop()

    # Then the answer is 400 naming the limit, not a server error
    assert response.status_code == 400, response.text
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in response.text
