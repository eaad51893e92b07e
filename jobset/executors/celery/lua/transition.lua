-- The tally's one move (tally.py): sub-job `index` of a set goes from its old
-- letter to `new` ('': back to not started), both counts adjusted, atomically and
-- idempotently.  A start moves only a sub-job with no letter yet, so a duplicate delivery
-- of a finished sub-job does not make the set read RUNNING again.  A final letter clears
-- the sub-job's pending bit (only in a bitmap its producer made: a set that Redis lost is
-- not given one with every other bit clear) and logs the end; back to '' sets the bit.
-- Each move is announced on the counts key's channel, which a producer's wait listens to.
local function transition(states, counts, pending, ended, index, new, ttl, start)
  local old = redis.call('HGET', states, index)
  if old == new or (old and start) then return 0 end
  if old then redis.call('HINCRBY', counts, old, -1) end
  if new == '' then
    redis.call('HDEL', states, index)
    redis.call('SETBIT', pending, index, 1)
    redis.call('EXPIRE', pending, ttl)
  else
    redis.call('HSET', states, index, new)
    redis.call('HINCRBY', counts, new, 1)
    if new ~= 'R' then
      if redis.call('EXISTS', pending) == 1 then redis.call('SETBIT', pending, index, 0) end
      redis.call('RPUSH', ended, index)
      redis.call('EXPIRE', ended, ttl)
    end
  end
  redis.call('EXPIRE', states, ttl)
  redis.call('EXPIRE', counts, ttl)
  redis.call('PUBLISH', counts, new)
  return 1
end
