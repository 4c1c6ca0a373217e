-- outbound.lua: an agent's reply into the customer's history; counts messages_out.
-- KEYS[1] - the domain anchor (id counters)
-- ARGV[1] - key prefix; ARGV[2] - msgpack {cv, ch, body, agent, at}
-- Returns msgpack of the interaction, or {err, msg}: conversation unknown.

local v = conversation(ARG.cv)
if not v then return finish(refuse('conversation', ARG.cv)) end
local c = customer(v.cu)
local ix = {id = next_id('ix'), cv = v.id, ch = ARG.ch, dir = 'out', at = ARG.at,
            body = ARG.body, type = 'message', meta = {agent = ARG.agent}}
append_history(c, ix)
c.no = c.no + 1
touch('cu', c.id)
return finish(ix)
