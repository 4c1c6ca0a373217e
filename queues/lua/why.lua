-- why.lua: a conversation's routing decisions and what its work waits for; reads only.
-- The shape and its rules are queues/why_memory.py's (the memory engine's twin).
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack)
-- ARGV[4] - msgpack {conversation, customer}
-- Returns msgpack {live = [{view, trace}], kept = {field = rows}, waiting = [...]}.
local conv = ARG.conversation

local function cutoff_of(g, r, tiers)
  local best = nil
  for _, tier in ipairs(tiers) do
    local cut = nil
    if r ~= '' then
      if r == tier and allowed(g, r) then cut = NOW end
    elseif allowed(g, tier) then
      cut = NOW - open_ms(g, tier)
    end
    if cut and (best == nil or cut > best) then best = cut end
  end
  return best
end

local function position(t, tiers)
  local step = POL.step_ms
  local mine = t.enq - t.prio * step
  local ahead = 0
  for _, part in ipairs(call('SMEMBERS', key('parts', t.ch))) do
    local g, r, p = string.match(part, '^([^|]*)|([^|]*)|([^|]*)')
    local cut = cutoff_of(g, r, tiers)
    if cut then
      local q = key('q', t.ch, part)
      local bound = mine + tonumber(p) * step
      if bound <= cut then
        ahead = ahead + call('ZCOUNT', q, '-inf', '(' .. bound)
        for _, id in ipairs(call('ZRANGEBYSCORE', q, bound, bound)) do
          if sless(id, t.id) then ahead = ahead + 1 end
        end
      else
        ahead = ahead + call('ZCOUNT', q, '-inf', cut)
      end
    end
  end
  return ahead + 1
end

-- when the agent's skills let it take t (queues/skills.py fits_at); -1: it lacks a hard one
local function fits_at(a, t)
  local at = t.enq
  local have = a.sk or {}
  for _, r in ipairs(reqs_of(t.sk)) do
    if (have[r[1]] or 0) < r[2] then
      if HARD[r[1]] then return -1 end
      at = math.max(at, t.enq + widen_ms(r[1]))
    end
  end
  return at
end

local function waiting(t)
  local tiers = {}
  if t.rs ~= '' then
    if allowed(t.grp, t.rs) then tiers = {t.rs} end
  else
    for _, tier in ipairs(TIERS) do
      if allowed(t.grp, tier) then tiers[#tiers + 1] = tier end
    end
  end
  local mine, opens = {}, {}
  for _, tier in ipairs(tiers) do
    mine[tier] = true
    if t.rs == '' then opens[tier] = t.enq + open_ms(t.grp, tier) end
  end
  local agents = {}
  for _, id in ipairs(sorted(call('SMEMBERS', key('agents')))) do
    local a = agent(id)
    if a and a.chosen ~= 'offline' and mine[a.tier] then
      agents[#agents + 1] = {a.id, a.tier, a.chosen, a.shown, free(a, t.ch),
                             (a.load.voice or 0) > 0, a.exp, excluded(t.id, a.id),
                             fits_at(a, t)}
    end
  end
  local eligible, pos = {}, false
  if t.hf == '' then
    eligible = eligible_tiers(t)
    local by = eligible
    if #by == 0 then by = tiers end
    pos = position(t, by)
  end
  return {task = t.id, channel = t.ch, group = t.grp, restrict = t.rs, enq_ms = t.enq,
          prio = t.prio, held_for = t.hf, pref_until = t.pu, eligible = eligible, opens = opens,
          agents = agents, position = pos}
end

local live, waits = {}, {}
for _, id in ipairs(sorted(call('SMEMBERS', key('cust', ARG.customer)))) do
  if string.match(id, '^([^~]*)') == conv then
    local t = task(id)
    if t then
      live[#live + 1] = {view = task_view(t), trace = rows_of(t.tr)}
      if t.st == 'queued' then waits[#waits + 1] = waiting(t) end
    end
  end
end
local kept = {}
local rows = call('HGETALL', key('why', conv))
for i = 1, #rows, 2 do kept[rows[i]] = rows_of(rows[i + 1]) end
return cmsgpack.pack({live = live, kept = kept, waiting = waits})
