-- agents.lua: every agent's view, sorted by id, for ops; reads only.
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack); ARGV[4] - msgpack {}
-- Returns msgpack [agent view, ...] (see agent.lua), sorted by id byte-wise.

local out = {}
for _, id in ipairs(sorted(call('SMEMBERS', key('agents')))) do out[#out + 1] = agent_view(agent(id)) end
return cmsgpack.pack(out)
