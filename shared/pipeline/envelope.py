"""The task envelope: what travels on the queue, encoded once and decoded once.

``msgspec`` encodes and validates in one pass in C, which keeps the accept and process paths cheap;
a body that does not decode becomes :class:`~shared.errors.DecodeError` with the reason, so the
message can be dead-lettered instead of crashing the consumer.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shared.errors import DecodeError


class TaskEnvelope(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One task as queued: its id, type, validated payload and when it was accepted (epoch s)."""

    id: str
    type: str
    payload: dict[str, Any]
    submitted_at: float

    def encode(self) -> bytes:
        return _ENCODER.encode(self)

    @classmethod
    def decode(cls, body: bytes | str) -> TaskEnvelope:
        try:
            return _DECODER.decode(body)
        except msgspec.DecodeError as exc:
            raise DecodeError(f"not a task envelope: {exc}") from exc


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(TaskEnvelope)
