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
-- ARG.h: [[conversation, frame msgpack]] for the conversation's holder as it is now: pushed to
-- it when the conversation is offered, assigned or in wrap-up; kept in pend:CONVERSATION while
-- it is queued (its offer is being made on some node) and pushed, after that push's own
-- frames, by the push that records it offered or assigned; dropped once it is closed.
-- ARG.c (with ARG.lo, ARG.hi: the lowest and highest of ARG.ack): the consumer finishing
-- those entries. Every one of them must still be pending for it, else nothing is done and the
-- push is refused `fenced`: another node took them over (nodes.lua) and delivers their frames
-- itself, so a node that was presumed dead never delivers twice.
-- Returns msgpack [seq per frame of ARG.f].

local ack = ARG.ack or {}
if ARG.c and #ack > 0 then
  local mine = {}
  local rows = call('XPENDING', key('log'), 'router', ARG.lo, ARG.hi, 2 * #ack + 100, ARG.c)
  for _, row in ipairs(rows) do mine[row[1]] = true end
  for _, id in ipairs(ack) do
    if not mine[id] then
      return finish(refuse('fenced', 'log entry ' .. id .. ' is no longer held by ' .. ARG.c))
    end
  end
end

for _, change in ipairs(ARG.s or {}) do
  local v = conversation(change[1])
  if v then set_conversation_state(v, change[2], change[3]) end
end
-- Deliveries are gathered first and numbered per agent after: one INCRBY per agent per push,
-- however many frames it gets, then one XADD per frame.
local pushed, order, rows = {}, {}, {} -- rows[i]: the [seq, frame] of ARG.f[i]
local function deliver(agent, frame)
  local list = pushed[agent]
  if list == nil then
    list = {}
    pushed[agent] = list
    order[#order + 1] = agent
  end
  local row = {0, frame}
  list[#list + 1] = row
  return row
end
for i, pair in ipairs(ARG.f) do rows[i] = deliver(pair[1], pair[2]) end
local HELD = {offered = true, assigned = true, wrapup = true}
for _, change in ipairs(ARG.s or {}) do -- frames that waited for this conversation's holder
  local v = conversation(change[1])
  -- v.pd: frames are waiting (false: none; nil, a record from before pd: look)
  if v and HELD[v.st] and v.ag ~= '' and v.pd ~= false then
    local pend = key('pend', v.id)
    for _, frame in ipairs(call('LRANGE', pend, 0, -1)) do deliver(v.ag, frame) end
    call('DEL', pend)
    v.pd = false
    touch('cv', v.id)
  end
end
for _, pair in ipairs(ARG.h or {}) do
  local v = conversation(pair[1])
  if v and HELD[v.st] and v.ag ~= '' then
    deliver(v.ag, pair[2])
  elseif v and v.st == 'queued' then
    call('RPUSH', key('pend', v.id), pair[2])
    call('EXPIRE', key('pend', v.id), 86400)
    v.pd = true
    touch('cv', v.id)
  end
end
for _, agent in ipairs(order) do
  local list = pushed[agent]
  local first = call('INCRBY', key('oseq', agent), #list) - #list
  for i, row in ipairs(list) do
    row[1] = first + i
    call('XADD', key('obox', agent), 'MAXLEN', ARG.keep, row[1] .. '-0', 'f', row[2])
  end
  call('PUBLISH', key('wake', agent), cmsgpack.pack(list))
end
local out = {}
for i, row in ipairs(rows) do out[i] = row[1] end
if #ack > 0 then
  call('XACK', key('log'), 'router', unpack(ack))
  call('XDEL', key('log'), unpack(ack))
end
return finish(out)
