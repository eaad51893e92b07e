-- requires: transition.lua
-- Everything a worker reads and records before it simulates a sub-job, in one round trip
-- (workers/steps.py).
-- KEYS: the set's cancel mark, the sub-job's cancel mark, runs, states, counts, pending,
--       ended, the signed batch, the signed backend, Celery's record of the task, the
--       set's record.
-- ARGV: index, TTL, started field, ended field, the cap on worker losses, '1' to read the
--       backend too ('' when the worker holds it already), Celery's STARTED record (JSON),
--       the record's TTL (0: none).
-- Celery's STARTED record is written here, as Celery's own task_track_started writes it
-- (SET with its expiry, then PUBLISH on its key, never over a SUCCESS record), saving
-- that step's two round trips.
-- Returns {2} for a set that was never stored here (an invented id: nothing is written of
-- it), {1} for a cancelled sub-job (nothing recorded: the worker records the cancel after
-- Celery's own record), else {0, earlier starts that never ended, batch, backend}.
-- Counted as RUNNING only when it will run (fewer losses than the cap).
if redis.call('EXISTS', KEYS[11], KEYS[8]) == 0 then return {2} end
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return {1} end
local record = redis.call('GET', KEYS[10])
local ok, meta = pcall(cjson.decode, record or 'null')
if not (ok and type(meta) == 'table' and meta['status'] == 'SUCCESS') then
  if tonumber(ARGV[8]) > 0 then
    redis.call('SET', KEYS[10], ARGV[7], 'EX', ARGV[8])
  else
    redis.call('SET', KEYS[10], ARGV[7])
  end
  redis.call('PUBLISH', KEYS[10], ARGV[7])
end
local started = redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
local ended = tonumber(redis.call('HGET', KEYS[3], ARGV[4]) or '0') or 0
redis.call('EXPIRE', KEYS[3], ARGV[2])
local lost = started - 1 - ended
if lost < tonumber(ARGV[5]) then
  transition(KEYS[4], KEYS[5], KEYS[6], KEYS[7], ARGV[1], 'R', ARGV[2], true)
end
local backend = false
if ARGV[6] == '1' then backend = redis.call('GET', KEYS[9]) end
return {0, lost, redis.call('GET', KEYS[8]), backend}
