-- dump.lua: every task and agent of the domain, for tests and debugging; reads only.
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack); ARGV[4] - msgpack {}
-- Returns msgpack {tasks: {id: task view}, agents: {id: agent view}} (empty maps may come
-- back as empty arrays).

local out = {tasks = {}, agents = {}}
for _, id in ipairs(call('SMEMBERS', key('tasks'))) do out.tasks[id] = task_view(task(id)) end
for _, id in ipairs(call('SMEMBERS', key('agents'))) do out.agents[id] = agent_view(agent(id)) end
return cmsgpack.pack(out)
