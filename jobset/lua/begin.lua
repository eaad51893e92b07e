-- Everything a worker reads and records before it simulates a sub-job, in one round trip
-- (workers/steps.py).
-- KEYS: the set's cancel mark, the sub-job's cancel mark, runs, states, counts, pending,
--       ended, the signed batch, the signed backend.
-- ARGV: index, TTL, started field, ended field, the cap on worker losses, '1' to read the
--       backend too ('' when the worker holds it already).
-- Returns {1} for a cancelled sub-job (nothing recorded: the worker records the cancel
-- after Celery's own record), else {0, earlier starts that never ended, batch, backend}.
-- Counted as RUNNING only when it will run (fewer losses than the cap).
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return {1} end
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
