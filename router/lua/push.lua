-- push.lua: frames into their agents' outboxes, numbered per agent, and one wake per agent.
-- KEYS[1] - the domain anchor
-- ARGV[1] - key prefix; ARGV[2] - msgpack {keep = outbox_keep, f = [[agent, frame msgpack]],
--           s = [[conversation, state, agent or '']] — the states these frames announce}
-- States are applied first, in order; a change to a closed or unknown conversation is skipped
-- (a late effect never reopens one), so frames and states land together in one call.
-- Outbox: stream obox:AGENT, entry id SEQ-0, field f = the frame; trimmed to exactly `keep`.
-- Counter: oseq:AGENT (never trimmed: `head`). Wake: PUBLISH wake:AGENT with the last seq.
-- Returns msgpack [seq per frame].

for _, change in ipairs(ARG.s or {}) do
  local v = conversation(change[1])
  if v then set_conversation_state(v, change[2], change[3]) end
end
local out, last, order = {}, {}, {}
for i, pair in ipairs(ARG.f) do
  local agent = pair[1]
  local seq = call('INCR', key('oseq', agent))
  call('XADD', key('obox', agent), 'MAXLEN', ARG.keep, seq .. '-0', 'f', pair[2])
  out[i] = seq
  if last[agent] == nil then order[#order + 1] = agent end
  last[agent] = seq
end
for _, agent in ipairs(order) do
  call('PUBLISH', key('wake', agent), last[agent])
end
return finish(out)
