-- push.lua: frames into their agents' outboxes, numbered per agent, and one wake per agent.
-- KEYS[1] - the domain anchor
-- ARGV[1] - key prefix; ARGV[2] - msgpack {keep = outbox_keep, f = [[agent, frame msgpack]],
--           s = [[conversation, state, agent or '']] — the states these frames announce}
-- States are applied first, in order; a change to a closed or unknown conversation is skipped
-- (a late effect never reopens one), so frames and states land together in one call.
-- Outbox: stream obox:AGENT, entry id SEQ-0, field f = the frame; trimmed to exactly `keep`.
-- Counter: oseq:AGENT (never trimmed: `head`). Wake: one PUBLISH wake:AGENT per agent carrying
-- msgpack [[seq, frame msgpack], …] — the frames themselves, so a listener that is up to date
-- delivers them without reading the outbox. ARG.ack: log entry ids these frames finish,
-- XACKed and XDELed in the same step.
-- Returns msgpack [seq per frame].

for _, change in ipairs(ARG.s or {}) do
  local v = conversation(change[1])
  if v then set_conversation_state(v, change[2], change[3]) end
end
local out, pushed, order = {}, {}, {}
for i, pair in ipairs(ARG.f) do
  local agent = pair[1]
  local seq = call('INCR', key('oseq', agent))
  call('XADD', key('obox', agent), 'MAXLEN', ARG.keep, seq .. '-0', 'f', pair[2])
  out[i] = seq
  local list = pushed[agent]
  if list == nil then
    list = {}
    pushed[agent] = list
    order[#order + 1] = agent
  end
  list[#list + 1] = {seq, pair[2]}
end
for _, agent in ipairs(order) do
  call('PUBLISH', key('wake', agent), cmsgpack.pack(pushed[agent]))
end
local ack = ARG.ack or {}
if #ack > 0 then
  call('XACK', key('log'), 'router', unpack(ack))
  call('XDEL', key('log'), unpack(ack))
end
return finish(out)
