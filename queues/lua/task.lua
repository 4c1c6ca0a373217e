-- task.lua: one task's view; reads only.
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack); ARGV[4] - msgpack {task}
-- Returns msgpack {id, customer, channel, group, prio, enq_ms, state, agent, res, restrict,
-- last, held_for, excluded} or nil.

local t = task(ARG.task)
if not t then return cmsgpack.pack(nil) end
return cmsgpack.pack(task_view(t))
