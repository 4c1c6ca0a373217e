-- read.lua: log entries for one consumer: reclaimed idle ones first, then new ones.
-- KEYS[1] - the domain anchor
-- ARGV[1] - key prefix; ARGV[2] - msgpack {c = consumer, n = count, idle = claim_idle_ms}
-- Stream log, consumer group `router`. XAUTOCLAIM takes entries pending for at least `idle`
-- ms (any consumer's); XREADGROUP (never blocking inside a script) fills up to `n`.
-- Returns the entries as Redis replies, [[id, [field, value, …]], …], bodies untouched.

local stream = key('log')
local claimed = call('XAUTOCLAIM', stream, 'router', ARG.c, ARG.idle, '0-0', 'COUNT', ARG.n)
local out = claimed[2]
local left = ARG.n - #out
if left > 0 then
  local fresh = call('XREADGROUP', 'GROUP', 'router', ARG.c, 'COUNT', left, 'STREAMS', stream, '>')
  if fresh then
    for _, entry in ipairs(fresh[1][2]) do out[#out + 1] = entry end
  end
end
return out
