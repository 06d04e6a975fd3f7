"""The task envelope: what travels on the queue, encoded once and decoded once.

``msgspec`` encodes and validates in one pass in C, which keeps the accept and process paths cheap;
a body that does not decode becomes :class:`~shared.errors.DecodeError` with the reason, so the
message can be dead-lettered instead of crashing the consumer.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shared.errors import DecodeError


class TaskEnvelope(msgspec.Struct, frozen=True, forbid_unknown_fields=False, omit_defaults=True):
    """One task as queued: its id, type, validated payload and when it was accepted (epoch s).

    ``not_before`` (epoch s) is when it may run at the earliest: a delayed task, or the next attempt
    of a failed one. A delivery that arrives before then is put off again, never run.
    """

    id: str
    type: str
    payload: dict[str, Any]
    submitted_at: float
    not_before: float | None = None
    #: When it may no longer start (epoch s): a task not started by then is not run, but ``expired``.
    expires_at: float | None = None
    #: Its lane (:mod:`shared.brokers.lanes`): ``high``, ``normal`` or ``low``; every attempt keeps it.
    priority: str = "normal"

    def due_in(self, now: float) -> float:
        """Seconds until it may run; zero or less when it may run now."""
        return (self.not_before or 0.0) - now

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
