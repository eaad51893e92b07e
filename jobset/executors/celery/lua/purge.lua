-- Removes, atomically, every message of the lists KEYS that contains one of ARGV (a set
-- id, or task ids in quotes); returns how many (jobset/executors/celery/recovery.py).
-- Producers push and workers pop meanwhile, so each list is rewritten in one step.  Redis
-- serves nothing else while it runs: about 0.1 s for 20 000 messages.
local removed = 0
for _, key in ipairs(KEYS) do
  local items = redis.call('LRANGE', key, 0, -1)
  local keep = {}
  for _, item in ipairs(items) do
    local hit = false
    for _, needle in ipairs(ARGV) do
      if string.find(item, needle, 1, true) then hit = true break end
    end
    if hit then removed = removed + 1 else keep[#keep + 1] = item end
  end
  if #keep < #items then
    redis.call('DEL', key)
    for i = 1, #keep, 4000 do
      redis.call('RPUSH', key, unpack(keep, i, math.min(i + 3999, #keep)))
    end
  end
end
return removed
