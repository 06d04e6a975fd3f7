"""The Lua scripts behind every write a task causes: each reads and writes atomically, in one round
trip, and keeps the listing indexes (:mod:`shared.store.keys`) in step with the task's status.
"""

from __future__ import annotations

from shared.store.batching import Script
from shared.store.keys import INDEX, TASK_PREFIX

# Shared by the scripts: the task id of a task key, and moving a task between status indexes (scored
# by when it was submitted, so listings are newest first).
_INDEX = f"""
local function task_id(key) return string.sub(key, {len(TASK_PREFIX) + 1}) end
-- The live backlog: tasks accepted and not yet in a final status, kept with every status change.
local function final(status)
  return status == 'succeeded' or status == 'dead-lettered' or status == 'cancelled' or status == 'expired'
end
local function finished(counters, was)
  if not final(was) then redis.call('HINCRBY', counters, 'unfinished', -1) end
end
local function move(key, from, to, score)
  local id = task_id(key)
  if from and from ~= to then redis.call('ZREM', '{INDEX}s:' .. from, id) end
  redis.call('ZADD', '{INDEX}s:' .. to, score, id)
end
"""

# Starting an attempt must read and write atomically: a redelivered task that already succeeded
# (or was dead-lettered) must not run again, whichever consumer sees it first.
_BEGIN = (
    _INDEX
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if final(status) then
  return {status, tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0'), false}
end
local cached = false
if #KEYS > 1 then cached = redis.call('GET', KEYS[2]) end
-- The same start asked again (its first answer was lost with the connection) is the same attempt.
if status == 'running' and redis.call('HGET', KEYS[1], 'begun') == ARGV[5] then
  return {status, tonumber(redis.call('HGET', KEYS[1], 'attempts')), cached}
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1], 'type', ARGV[3],
           'submitted_at', ARGV[4], 'begun', ARGV[5])
move(KEYS[1], status, 'running', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {status or 'unknown', attempts, cached}
"""
)

# KEYS: counters, then one task hash per task; ARGV: ttl, the submission's trace id ('' untraced),
# its time, the backlog limit (0: none), then per task its type, when it is due ('' for at once), when
# it expires ('' never), its payload (JSON) and its priority. Admission and the count are one step:
# while the live backlog is at the limit nothing is recorded, so it never exceeds the limit by more
# than one batch.
# Returns {1, the backlog with these tasks} or {0, the backlog that refused them}.
_ACCEPT = (
    _INDEX
    + """
local unfinished = tonumber(redis.call('HGET', KEYS[1], 'unfinished') or '0')
local limit = tonumber(ARGV[4])
if limit > 0 and unfinished >= limit then return {0, unfinished} end
local per_type = {}
local submitted = ARGV[3]
for i = 2, #KEYS do
  local at = 5 * i - 5
  local task_type = ARGV[at]
  local status = 'queued'
  redis.call('HSET', KEYS[i], 'type', task_type, 'attempts', 0, 'submitted_at', submitted,
             'payload', ARGV[at + 3])
  if ARGV[at + 2] ~= '' then redis.call('HSET', KEYS[i], 'expires_at', ARGV[at + 2]) end
  if ARGV[at + 4] ~= 'normal' then redis.call('HSET', KEYS[i], 'priority', ARGV[at + 4]) end
  if ARGV[2] ~= '' then redis.call('HSET', KEYS[i], 'trace_id', ARGV[2]) end
  if ARGV[at + 1] ~= '' then
    status = 'scheduled'
    redis.call('HSET', KEYS[i], 'due_at', ARGV[at + 1])
  end
  redis.call('HSET', KEYS[i], 'status', status)
  redis.call('EXPIRE', KEYS[i], ARGV[1])
  local id = task_id(KEYS[i])
  redis.call('ZADD', 'tl:idx:all', submitted, id)
  redis.call('ZADD', 'tl:idx:t:' .. task_type, submitted, id)
  move(KEYS[i], false, status, submitted)
  per_type[task_type] = (per_type[task_type] or 0) + 1
end
-- The indexes keep what the tasks' hashes keep: entries past the status TTL go.
local oldest = tonumber(submitted) - tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', 'tl:idx:all', '-inf', oldest)
for task_type, _ in pairs(per_type) do
  redis.call('ZREMRANGEBYSCORE', 'tl:idx:t:' .. task_type, '-inf', oldest)
end
redis.call('HINCRBY', KEYS[1], 'accepted', #KEYS - 1)
redis.call('HINCRBY', KEYS[1], 'unfinished', #KEYS - 1)
for task_type, count in pairs(per_type) do
  redis.call('HINCRBY', KEYS[1], 'accepted:' .. task_type, count)
end
local this_second = 'tl:ta:' .. math.floor(tonumber(submitted))
redis.call('INCRBY', this_second, #KEYS - 1)
redis.call('EXPIRE', this_second, 120)
return {1, unfinished + #KEYS - 1}
"""
)

# KEYS: task, counters, duration histogram, queue-wait histogram, this second's throughput
# [, cache key, cache index]; ARGV: now, ttl, type, result, duration bucket, wait bucket,
# cache hit ('1' hit, '0' miss, '' not cached), cache ttl, cache expiry.
_SUCCEED = (
    _INDEX
    + """
local previous = redis.call('HGET', KEYS[1], 'status')
finished(KEYS[2], previous)
redis.call('HSET', KEYS[1], 'status', 'succeeded', 'result', ARGV[4], 'finished_at', ARGV[1])
move(KEYS[1], previous, 'succeeded', redis.call('HGET', KEYS[1], 'submitted_at') or ARGV[1])
redis.call('HDEL', KEYS[1], 'error', 'traceback', 'retry_at', 'envelope')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], 'processed', 1)
redis.call('HINCRBY', KEYS[2], 'processed:' .. ARGV[3], 1)
redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
redis.call('HINCRBY', KEYS[4], ARGV[6], 1)
redis.call('INCR', KEYS[5])
redis.call('EXPIRE', KEYS[5], 120)
if ARGV[7] == '1' then
  redis.call('HINCRBY', KEYS[2], 'cache_hits', 1)
elseif ARGV[7] == '0' then
  redis.call('HINCRBY', KEYS[2], 'cache_misses', 1)
  if #KEYS > 5 then
    redis.call('SET', KEYS[6], ARGV[4], 'EX', ARGV[8])
    redis.call('ZADD', KEYS[7], ARGV[9], KEYS[6])
  end
end
return 1
"""
)

# KEYS: task, counters; ARGV: now, ttl, type, error, final ('1' when attempts are used up), the
# handler's traceback, when the next attempt is due ('' when none), the task's envelope (to redrive it),
# and why it is dead-lettered (DeadLetterReason) when final.
_FAIL = (
    _INDEX
    + """
local status = 'failed'
local previous = redis.call('HGET', KEYS[1], 'status')
if ARGV[5] == '1' then
  status = 'dead-lettered'
  finished(KEYS[2], previous)
end
move(KEYS[1], previous, status,
     redis.call('HGET', KEYS[1], 'submitted_at') or ARGV[1])
redis.call('HSET', KEYS[1], 'status', status, 'error', ARGV[4], 'finished_at', ARGV[1],
           'traceback', ARGV[6], 'envelope', ARGV[8])
if ARGV[7] == '' then redis.call('HDEL', KEYS[1], 'retry_at')
else redis.call('HSET', KEYS[1], 'retry_at', ARGV[7]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], 'failed', 1)
redis.call('HINCRBY', KEYS[2], 'failed:' .. ARGV[3], 1)
if ARGV[5] == '1' then
  redis.call('HINCRBY', KEYS[2], 'dead_lettered', 1)
  redis.call('HINCRBY', KEYS[2], 'dead_lettered:' .. ARGV[3], 1)
  redis.call('HSET', KEYS[1], 'reason', ARGV[9])
end
return 1
"""
)
# A redrive claims a failed or dead-lettered task atomically, so one task is re-sent once however many
# redrives race. KEYS: task, counters; ARGV: the envelope to use when the task has none kept ('' for
# none). Returns {status or '', envelope or '' (not claimed)} (a Lua nil would cut the reply short).
_REDRIVE = (
    _INDEX
    + """
local status = redis.call('HGET', KEYS[1], 'status') or ''
if status ~= 'failed' and status ~= 'dead-lettered' then return {status, ''} end
local envelope = redis.call('HGET', KEYS[1], 'envelope') or ARGV[1]
if envelope == '' then return {status, ''} end
move(KEYS[1], status, 'queued', redis.call('HGET', KEYS[1], 'submitted_at') or '0')
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', 0)
redis.call('HDEL', KEYS[1], 'retry_at', 'envelope', 'finished_at')
redis.call('HINCRBY', KEYS[2], 'redriven', 1)
if final(status) then redis.call('HINCRBY', KEYS[2], 'unfinished', 1) end
return {status, envelope}
"""
)
# A queued or scheduled task may be cancelled until it starts; the processor then skips its message.
# KEYS: task, counters; ARGV: now. Returns the status it was in ('' when unknown).
_CANCEL = (
    _INDEX
    + """
local status = redis.call('HGET', KEYS[1], 'status') or ''
if status ~= 'queued' and status ~= 'scheduled' then return status end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1])
move(KEYS[1], status, 'cancelled', redis.call('HGET', KEYS[1], 'submitted_at') or ARGV[1])
redis.call('HINCRBY', KEYS[2], 'cancelled', 1)
finished(KEYS[2], status)
return status
"""
)
# A task that has not started by its expiry is not run. KEYS: task, counters; ARGV: now, type, ttl.
# Returns the status it was in; it lapsed only if that was queued, scheduled or unknown.
_LAPSE = (
    _INDEX
    + """
local status = redis.call('HGET', KEYS[1], 'status') or ''
if status ~= '' and status ~= 'queued' and status ~= 'scheduled' then return status end
redis.call('HSET', KEYS[1], 'status', 'expired', 'finished_at', ARGV[1], 'type', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
move(KEYS[1], status ~= '' and status, 'expired', redis.call('HGET', KEYS[1], 'submitted_at') or ARGV[1])
redis.call('HINCRBY', KEYS[2], 'expired', 1)
redis.call('HINCRBY', KEYS[2], 'expired:' .. ARGV[2], 1)
finished(KEYS[2], status)
return status
"""
)
# A caller's rate, as a generic cell rate algorithm: one key per caller holds the theoretical arrival
# time of its next task. KEYS: the caller's key; ARGV: now (s), seconds per task, burst, tasks asked.
# Returns {1, remaining, reset} when they may go (and takes them), {0, retry after, reset} when not;
# numbers as text (a Lua number would be cut to an integer).
_RATE = """
local now, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local burst, cost = tonumber(ARGV[3]), tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, tostring(allow_at - now), tostring(tat - now)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1)
return {1, tostring(math.floor((now - allow_at) / interval)), tostring(new_tat - now)}
"""
# The timer's reconciliation of the live backlog: the tasks the status indexes hold as not finished
# (entries past the status TTL go first), or the broker's own count when it holds more (Valkey lost
# writes). KEYS: counters, the queued, scheduled, running and failed indexes; ARGV: the broker's count,
# the oldest submission time still kept. Returns {the count before, the count now}.
_RECONCILE = """
local kept = 0
for i = 2, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. ARGV[2])
  kept = kept + redis.call('ZCARD', KEYS[i])
end
local before = tonumber(redis.call('HGET', KEYS[1], 'unfinished') or '0')
local now = math.max(kept, tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'unfinished', now)
return {before, now}
"""
BEGIN, ACCEPT, SUCCEED, FAIL = Script(_BEGIN), Script(_ACCEPT), Script(_SUCCEED), Script(_FAIL)
RATE = Script(_RATE)
REDRIVE, CANCEL, LAPSE = Script(_REDRIVE), Script(_CANCEL), Script(_LAPSE)
RECONCILE = Script(_RECONCILE)
