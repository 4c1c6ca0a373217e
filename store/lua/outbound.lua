-- outbound.lua: an agent's reply into the customer's history; counts messages_out.
-- KEYS[1] - the domain anchor (id counters)
-- ARGV[1] - key prefix; ARGV[2] - msgpack {cv, ch, body, agent, at, send = 1 to queue the job
--           that sends it}
-- Job: stream out (group `send`), field j = msgpack {kind = 'reply', cv, cu, ch, ix, ag, body}.
-- Returns msgpack of the interaction, or {err, msg}: conversation unknown.

local v = conversation(ARG.cv)
if not v then return finish(refuse('conversation', ARG.cv)) end
local c = customer(v.cu)
local ix = {id = next_id('ix'), cv = v.id, ch = ARG.ch, dir = 'out', at = ARG.at,
            body = ARG.body, type = 'message', meta = {agent = ARG.agent}}
append_history(c, ix)
c.no = c.no + 1
touch('cu', c.id)
if ARG.send == 1 then
  local job = {kind = 'reply', cv = v.id, cu = c.id, ch = ARG.ch, ix = ix.id, ag = ARG.agent,
               body = ARG.body}
  call('XADD', key('out'), '*', 'j', cmsgpack.pack(job))
end
return finish(ix)
