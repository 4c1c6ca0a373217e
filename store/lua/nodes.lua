-- nodes.lua: one node's heartbeat, and the takeover of every node found dead.
-- KEYS[1] - the domain anchor
-- ARGV[1] - key prefix; ARGV[2] - msgpack {n = node, tok = this process's token,
--           ttl = lease ms, max = most log entries to claim per dead consumer,
--           first = 1 on the process's first beat}
-- Keys: node:NODE (string, the token, PX ttl) — the lease; `nodes` (set) — nodes that ever
-- beat; desk:AGENT (hash node → desktops) and desks:NODE (set of agents) — who is connected
-- where (desk.lua).
-- A node is dead when its lease has lapsed; a consumer of the log or the jobs stream without a
-- lease is dead too (a node beats before it reads). For each dead one: its pending log entries
-- and jobs are XCLAIMed to this node (read back by read.lua `own`), its consumers are deleted
-- once they hold nothing, its desktops are forgotten, and the agents connected
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
local STREAMS = {{key('log'), 'router'}, {key('out'), 'send'}}
local consumers = {} -- stream index → dead consumer → pending
for i, sg in ipairs(STREAMS) do
  consumers[i] = {}
  if call('EXISTS', sg[1]) == 1 then
    for _, info in ipairs(call('XINFO', 'CONSUMERS', sg[1], sg[2])) do
      local name, pending = nil, 0
      for j = 1, #info, 2 do
        if info[j] == 'name' then name = info[j + 1] end
        if info[j] == 'pending' then pending = info[j + 1] end
      end
      if name and not alive(name) then
        consumers[i][name] = pending
        if not seen[name] then dead[#dead + 1] = name; seen[name] = true end
      end
    end
  end
end

local claimed, orphans = 0, {}
for _, node in ipairs(dead) do
  local left = 0
  for i, sg in ipairs(STREAMS) do
    local pending = consumers[i][node]
    if pending ~= nil then
      if pending > 0 then
        local ids = {}
        for _, row in ipairs(call('XPENDING', sg[1], sg[2], '-', '+', ARG.max, node)) do
          ids[#ids + 1] = row[1]
        end
        if #ids > 0 then
          call('XCLAIM', sg[1], sg[2], me, 0, unpack(ids))
          claimed = claimed + #ids
        end
        pending = pending - #ids
      end
      if pending <= 0 then
        call('XGROUP', 'DELCONSUMER', sg[1], sg[2], node)
      else
        left = left + pending
      end
    end
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
  if left <= 0 then call('SREM', key('nodes'), node) end
end
return cmsgpack.pack({fenced = ARG.first ~= 1 and held ~= ARG.tok,
                      clash = held ~= false and held ~= ARG.tok, claimed = claimed,
                      dead = dead, orphans = orphans})
