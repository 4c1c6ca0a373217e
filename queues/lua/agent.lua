-- agent.lua: one agent's view; reads only.
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack); ARGV[4] - msgpack {agent}
-- Returns msgpack {id, tier, chosen, state, cap, load, wrapups, idle_ms, exp_ms, tasks} or nil.

local a = agent(ARG.agent)
if not a then return cmsgpack.pack(nil) end
return cmsgpack.pack(agent_view(a))
