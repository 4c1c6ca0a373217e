-- desk.lua: count an agent's desktops on one node; say how many other live nodes have one.
-- KEYS[1] - the domain anchor
-- ARGV[1] - key prefix; ARGV[2] - msgpack {a = agent, n = node, d = change (+1 connected,
--           -1 closed, 0 to ask), set = an absolute count instead of d (a fenced node
--           re-registering)}
-- Keys: desk:AGENT (hash node → desktops), desks:NODE (set of agents); a node counts while
-- its lease node:NODE lives (nodes.lua forgets a dead node's desktops).
-- Returns msgpack: the number of other nodes, alive, where the agent has a desktop.

local desk = key('desk', ARG.a)
local n
if ARG.set ~= nil then
  n = ARG.set
  if n > 0 then call('HSET', desk, ARG.n, n) end
elseif ARG.d ~= 0 then
  n = call('HINCRBY', desk, ARG.n, ARG.d)
else
  n = tonumber(call('HGET', desk, ARG.n) or '0')
end
if n <= 0 then
  call('HDEL', desk, ARG.n)
  call('SREM', key('desks', ARG.n), ARG.a)
else
  call('SADD', key('desks', ARG.n), ARG.a)
end
local others = 0
for _, node in ipairs(call('HKEYS', desk)) do
  if node ~= ARG.n and call('EXISTS', key('node', node)) == 1 then others = others + 1 end
end
return cmsgpack.pack(others)
