-- requires: transition.lua
-- Everything a worker records when a sub-job succeeded, in one round trip
-- (workers/steps.py): its signed result, the end of this run, Celery's SUCCESS record,
-- the signed end record, the tally's move to done and the timeline's entry.
-- KEYS: the signed result, runs, Celery's record of the task, ends, states, counts,
--       pending, ended, the timeline.
-- ARGV: the signed result ('' when the worker wrote it already: on a replicated Redis it
--       is written, and waited for, before anything announces it), the TTL, the ended
--       field, Celery's SUCCESS record (JSON), that record's TTL (0: none), the index, the
--       end record, the timeline entry ('': none).
-- Celery's record is written as Celery's own backend writes it (SET with its expiry, then
-- PUBLISH on its key, never over a SUCCESS record), and before the end record and the
-- tally, so whatever the tally calls done, Celery's record says so too.
if ARGV[1] ~= '' then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
local record = redis.call('GET', KEYS[3])
local ok, meta = pcall(cjson.decode, record or 'null')
if not (ok and type(meta) == 'table' and meta['status'] == 'SUCCESS') then
  if tonumber(ARGV[5]) > 0 then
    redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])
  else
    redis.call('SET', KEYS[3], ARGV[4])
  end
  redis.call('PUBLISH', KEYS[3], ARGV[4])
end
redis.call('HSET', KEYS[4], ARGV[6], ARGV[7])
redis.call('EXPIRE', KEYS[4], ARGV[2])
transition(KEYS[5], KEYS[6], KEYS[7], KEYS[8], ARGV[6], 'D', ARGV[2], false)
if ARGV[8] ~= '' then
  redis.call('RPUSH', KEYS[9], ARGV[8])
  redis.call('EXPIRE', KEYS[9], ARGV[2])
end
return 1
