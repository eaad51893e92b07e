-- requires: transition.lua
-- KEYS: states, counts, pending, ended.  ARGV: index, new letter ('': none), TTL,
-- 'start' or ''.
return transition(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3],
                  ARGV[4] == 'start')
