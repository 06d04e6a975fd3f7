"""Idempotency keys, as the IETF "Idempotency-Key HTTP Header Field" draft has them.

A key is claimed with an in-flight marker and the request's fingerprint before anything is sent; it
holds the answer only once the broker has confirmed. Meanwhile a request with the same key is told
it conflicts; a request reusing the key with another body is told so; a failed send releases the key.
The marker expires on its own (a crashed instance cannot hold a key for a day).

Key: ``tl:idem:{sha256(key)}``, a hash of ``state`` (``pending`` | ``done``), ``fingerprint``
(sha256 of the body) and ``answer`` (the ids, and whether the body was an array).
"""

from __future__ import annotations

import enum
import hashlib

from shared.store.batching import Script
from shared.store.keys import P

#: How long an in-flight marker holds a key: well past a send's timeout.
PENDING_TTL = 60

# KEYS: the key; ARGV: fingerprint, pending ttl. Returns {outcome[, answer]}.
_CLAIM = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'fingerprint', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return {'claimed'}
end
if redis.call('HGET', KEYS[1], 'fingerprint') ~= ARGV[1] then return {'mismatch'} end
if state ~= 'done' then return {'in-flight'} end
return {'done', redis.call('HGET', KEYS[1], 'answer')}
"""
# KEYS: the key; ARGV: fingerprint, answer, ttl. Only the claim it belongs to may complete it.
_COMPLETE = """
if redis.call('HGET', KEYS[1], 'fingerprint') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'answer', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
CLAIM, COMPLETE = Script(_CLAIM), Script(_COMPLETE)


class Claim(enum.Enum):
    """What claiming a key found."""

    CLAIMED = "claimed"
    #: Another request with this key has not finished.
    IN_FLIGHT = "in-flight"
    #: The key was used with another body.
    MISMATCH = "mismatch"
    #: The key's request finished; its answer is kept.
    DONE = "done"


def key_name(key: str) -> str:
    return f"{P}idem:{hashlib.sha256(key.encode()).hexdigest()}"


def fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
