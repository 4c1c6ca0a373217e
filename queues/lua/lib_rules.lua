-- lib_rules.lua: what the policy derives from records (free capacity, routability, shown state,
-- level openings) and the skills rule (queues/skills.py). Follows lib_core.lua in one chunk.

-- derived values ----------------------------------------------------------------------------

local function free(a, c)
  if c ~= 'voice' and BLOCKS[c] and (a.load.voice or 0) > 0 then return 0 end
  local f = (a.cap[c] or 0) - (a.load[c] or 0)
  if f < 0 then return 0 end
  return f
end

local function routable(a)
  return a.chosen == 'available' and a.exp > NOW
end

local function shown_of(a)
  if a.chosen ~= 'available' then return a.chosen end
  local total = 0
  for _, c in ipairs(CH) do total = total + (a.load[c] or 0) end
  if total == 0 then return 'available' end
  if a.wr >= total then return 'wrapup' end
  return 'busy'
end

local function logged_in(tier)
  local n = LOGGED[tier]
  if n == nil then
    n = tonumber(call('HGET', key('logged'), tier) or '0')
    LOGGED[tier] = n
  end
  return n
end

local function add_logged(tier, by)
  LOGGED[tier] = tonumber(call('HINCRBY', key('logged'), tier, by))
  return LOGGED[tier]
end

local function open_ms(g, tier)
  local lv = levels(g)
  local mine = lv[tier] or 0
  if POL.empty then
    for other, l in pairs(lv) do
      if l < mine and logged_in(other) > 0 then return mine end
    end
    return 0
  end
  return mine
end

-- skills (queues/skills.py states the rule; cutoff and hard_ok mirror it) -----------------

local SIGS, SIG_COUNT = {}, 0

-- the (name, minimum) pairs of a skills signature 'a=1,b=3', parsed once per load
local function reqs_of(sig)
  if sig == nil or sig == '' then return {} end
  local reqs = SIGS[sig]
  if reqs == nil then
    reqs = {}
    for name, level in string.gmatch(sig, '([^,=]+)=(%d+)') do
      reqs[#reqs + 1] = {name, tonumber(level)}
    end
    if SIG_COUNT >= 1000 then SIGS, SIG_COUNT = {}, 0 end
    SIGS[sig] = reqs
    SIG_COUNT = SIG_COUNT + 1
  end
  return reqs
end

local function widen_ms(name)
  local by = POL.sk_by
  if by and by[name] then return by[name] end
  return POL.sk_ms or 0
end

-- the latest arrival an agent's skills let it take now; nil when it lacks a hard one
local function skill_cutoff(a, reqs)
  local cut = NOW
  local have = a.sk or {}
  for _, r in ipairs(reqs) do
    if (have[r[1]] or 0) < r[2] then
      if HARD[r[1]] then return nil end
      cut = math.min(cut, NOW - widen_ms(r[1]))
    end
  end
  return cut
end

local function hard_ok(a, reqs)
  local have = a.sk or {}
  for _, r in ipairs(reqs) do
    if HARD[r[1]] and (have[r[1]] or 0) < r[2] then return false end
  end
  return true
end

local function fits(a, t)
  if (t.sk or '') == '' then return true end
  local cut = skill_cutoff(a, reqs_of(t.sk))
  return cut ~= nil and t.enq <= cut
end

local function eligible_tiers(t)
  if t.rs ~= '' then
    if allowed(t.grp, t.rs) then return {t.rs} end
    return {}
  end
  local out = {}
  for _, tier in ipairs(TIERS) do
    if allowed(t.grp, tier) and t.enq + open_ms(t.grp, tier) <= NOW then out[#out + 1] = tier end
  end
  return out
end
