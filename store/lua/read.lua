-- read.lua: entries of a stream for one consumer: its own pending ones (when asked), reclaimed
-- idle ones, then new ones.
-- KEYS[1] - the domain anchor
-- ARGV[1] - key prefix; ARGV[2] - msgpack {c = consumer, n = count, idle = claim_idle_ms,
--           own = 1 to read the consumer's own pending entries first,
--           s = 'log' (group `router`: the event log) or 'out' (group `send`: outgoing jobs)}
-- `own`: entries this consumer holds unacknowledged — taken over from a dead node by
-- nodes.lua, or left by a batch that failed or was fenced. XAUTOCLAIM takes entries pending
-- for at least `idle` ms (any consumer's: the backstop for a node alive but stuck);
-- XREADGROUP (never blocking inside a script) fills up to `n`.
-- Returns [reclaimed, entries]: entries as Redis replies [[id, [field, value, …]], …], bodies
-- untouched, the first `reclaimed` of them read before (own or claimed).

local stream = key(ARG.s)
local group = ({log = 'router', out = 'send'})[ARG.s]
local out, seen = {}, {}
local function add(list)
  for _, entry in ipairs(list or {}) do
    if #out < ARG.n and not seen[entry[1]] then
      seen[entry[1]] = true
      out[#out + 1] = entry
    end
  end
end
if ARG.own == 1 then
  local own = call('XREADGROUP', 'GROUP', group, ARG.c, 'COUNT', ARG.n, 'STREAMS', stream, '0')
  if own then add(own[1][2]) end
end
if #out < ARG.n then
  add(call('XAUTOCLAIM', stream, group, ARG.c, ARG.idle, '0-0', 'COUNT', ARG.n - #out)[2])
end
local reclaimed = #out
if #out < ARG.n then
  local fresh = call('XREADGROUP', 'GROUP', group, ARG.c, 'COUNT', ARG.n - #out, 'STREAMS',
                     stream, '>')
  if fresh then add(fresh[1][2]) end
end
return {reclaimed, out}
