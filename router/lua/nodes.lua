-- nodes.lua: one node's heartbeat, and the takeover of every node found dead.
-- KEYS[1] - the domain anchor
-- ARGV[1] - key prefix; ARGV[2] - msgpack {n = node, tok = this process's token,
--           ttl = lease ms, max = most log entries to claim per dead consumer,
--           first = 1 on the process's first beat}
-- Keys: node:NODE (string, the token, PX ttl) — the lease; `nodes` (set) — nodes that ever
-- beat; desk:AGENT (hash node → desktops) and desks:NODE (set of agents) — who is connected
-- where (desk.lua).
-- A node is dead when its lease has lapsed; a consumer of the log group without a lease is
-- dead too (a node never leases nothing: it beats before it reads). For each dead one: its
-- pending log entries are XCLAIMed to this node (read back by read.lua `own`), the consumer
-- is deleted once it holds nothing, its desktops are forgotten, and the agents connected
-- nowhere else are returned as orphans, for the caller to log out.
-- Returns msgpack {fenced = our lease had lapsed or was another's (not on the first beat),
--                  clash = the lease held another process's token (two processes, one node
--                  name), claimed = n, dead = [node], orphans = [agent]}.

local me = ARG.n
local lease = key('node', me)
local held = call('GET', lease)
call('SET', lease, ARG.tok, 'PX', ARG.ttl)
call('SADD', key('nodes'), me)
local function alive(node)
  return node == me or call('EXISTS', key('node', node)) == 1
end

local dead, seen = {}, {}
for _, node in ipairs(call('SMEMBERS', key('nodes'))) do
  if not alive(node) then dead[#dead + 1] = node; seen[node] = true end
end
local log = key('log')
local consumers = {}
if call('EXISTS', log) == 1 then
  for _, info in ipairs(call('XINFO', 'CONSUMERS', log, 'router')) do
    local name, pending = nil, 0
    for i = 1, #info, 2 do
      if info[i] == 'name' then name = info[i + 1] end
      if info[i] == 'pending' then pending = info[i + 1] end
    end
    if name and not alive(name) then
      consumers[name] = pending
      if not seen[name] then dead[#dead + 1] = name; seen[name] = true end
    end
  end
end

local claimed, orphans = 0, {}
for _, node in ipairs(dead) do
  local pending = consumers[node] or 0
  if pending > 0 then
    local ids = {}
    for _, row in ipairs(call('XPENDING', log, 'router', '-', '+', ARG.max, node)) do
      ids[#ids + 1] = row[1]
    end
    if #ids > 0 then
      call('XCLAIM', log, 'router', me, 0, unpack(ids))
      claimed = claimed + #ids
    end
    pending = pending - #ids
  end
  if consumers[node] ~= nil and pending <= 0 then
    call('XGROUP', 'DELCONSUMER', log, 'router', node)
  end
  for _, agent in ipairs(call('SMEMBERS', key('desks', node))) do
    local desk = key('desk', agent)
    call('HDEL', desk, node)
    local elsewhere = false
    for _, other in ipairs(call('HKEYS', desk)) do
      if alive(other) then elsewhere = true end
    end
    if not elsewhere then orphans[#orphans + 1] = agent end
  end
  call('DEL', key('desks', node))
  if pending <= 0 then call('SREM', key('nodes'), node) end
end
return cmsgpack.pack({fenced = ARG.first ~= 1 and held ~= ARG.tok,
                      clash = held ~= false and held ~= ARG.tok, claimed = claimed,
                      dead = dead, orphans = orphans})
