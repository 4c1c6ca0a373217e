-- lib_views.lua: the lookups that refuse, and the views of records. Follows lib_match.lua in
-- one chunk; each operation's file comes after it.

-- lookups that refuse (each returns the record, or nil and the refusal) ----------------------

local function known_agent(id)
  local a = agent(id)
  if not a then return nil, refuse('not_found', 'agent ' .. id .. ' is not known') end
  return a
end

local function logged_in_agent(id)
  local a, err = known_agent(id)
  if a and a.chosen == 'offline' then
    return nil, refuse('conflict', 'agent ' .. id .. ' is offline; log in first')
  end
  return a, err
end

local function known_task(id)
  local t = task(id)
  if not t then return nil, refuse('not_found', 'task ' .. id .. ' is not known') end
  return t
end

local function reservation(res, aid)
  local tid = call('HGET', key('res'), res)
  if not tid then return nil, refuse('not_found', 'reservation ' .. res .. ' is not known') end
  local t = task(tid)
  if t.ag ~= aid then return nil, refuse('forbidden', 'reservation ' .. res .. ' is not yours') end
  if NOW >= t.dl then return nil, refuse('expired', 'reservation ' .. res .. ' has expired') end
  return t
end

local function held_task(id, aid, state)
  local t, err = known_task(id)
  if not t then return nil, err end
  if t.ag ~= aid then return nil, refuse('forbidden', 'task ' .. id .. ' is not held by you') end
  if t.st ~= state then
    return nil, refuse('conflict', 'task ' .. id .. ' is ' .. t.st .. ', not ' .. state)
  end
  return t
end

-- views -------------------------------------------------------------------------------------

local function agent_view(a)
  local cap, load = {}, {}
  for _, c in ipairs(CH) do
    cap[c] = a.cap[c] or 0
    load[c] = a.load[c] or 0
  end
  local v = {id = a.id, tier = a.tier, chosen = a.chosen, state = a.shown, cap = cap,
             load = load, wrapups = a.wr, idle_ms = a.idle, exp_ms = a.exp,
             tasks = sorted(call('SMEMBERS', key('atasks', a.id)))}
  if a.sk and next(a.sk) ~= nil then v.skills = a.sk end -- named only when it has any
  return v
end

-- the map name -> minimum of a signature, as views show it
local function skills_of(sig)
  local out = {}
  for _, r in ipairs(reqs_of(sig)) do out[r[1]] = r[2] end
  return out
end

local function task_view(t)
  local v = {id = t.id, customer = t.cust, channel = t.ch, group = t.grp, prio = t.prio,
             enq_ms = t.enq, state = t.st, agent = t.ag, res = t.res,
             res_until = t.st == 'reserved' and t.dl or nil, restrict = t.rs,
             last = t.last, held_for = t.hf,
             excluded = sorted(call('SMEMBERS', key('excl', t.id)))}
  if (t.sk or '') ~= '' then v.skills = skills_of(t.sk) end -- named only when it has any
  if t.ob then -- outbound work only: the tiers that may work it
    v.outbound = {}
    for tier in string.gmatch(t.ob, '[^,]+') do v.outbound[#v.outbound + 1] = tier end
  end
  return v
end
