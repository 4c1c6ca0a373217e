-- lib_steps.lua: the internal steps of docs/routing.md on one task or agent (touch, line,
-- unline, hold, offer, free_holder, the level timer) that the operations and the matching
-- (lib_match.lua) are made of. Follows lib_trace.lua in one chunk.

-- internal steps ----------------------------------------------------------------------------

-- Re-file an agent after a change: its ready-set entries and its seat count. Each costs
-- commands only for what changed: a ready entry is added where it is new or its idle time
-- moved (ZADD updates a score in place) and removed where it is gone; the seat count is one
-- hash field per (tier, shown, channels) combination, so a change is one decrement and one
-- increment whatever the number of channels (stats.lua expands the field per channel).
local function touch(a)
  local chans = {}
  if a.chosen == 'available' then
    for _, c in ipairs(CH) do
      if free(a, c) > 0 then chans[#chans + 1] = c end
    end
  end
  local rsig = a.tier .. '|' .. a.idle .. '|' .. table.concat(chans, ',')
  if rsig ~= (a.rsig or '') then
    local now_in, was_in = {}, {}
    if a.rt == a.tier then
      for _, c in ipairs(chans) do now_in[c] = true end
      if a.ri == a.idle then
        for _, c in ipairs(a.rc or {}) do was_in[c] = true end
      end
    end
    for _, c in ipairs(a.rc or {}) do
      if not now_in[c] then call('ZREM', key('ready', c, a.rt), a.id) end
    end
    for _, c in ipairs(chans) do
      if not was_in[c] then call('ZADD', key('ready', c, a.tier), a.idle, a.id) end
    end
    a.rt, a.rc, a.ri, a.rsig = a.tier, chans, a.idle, rsig
  end
  local shown = shown_of(a)
  local cc = {}
  if shown ~= 'offline' then
    for _, c in ipairs(CH) do
      if (a.cap[c] or 0) > 0 then cc[#cc + 1] = c end
    end
  end
  local csig = a.tier .. '|' .. shown .. '|' .. table.concat(cc, ',')
  if csig ~= (a.csig or '') then
    if a.cc then
      -- counted under the earlier layout (a hash per channel): take it out of those
      for _, c in ipairs(a.cc) do
        local field = a.ct .. '|' .. a.cs
        if call('HINCRBY', key('seats', c), field, -1) <= 0 then call('HDEL', key('seats', c), field) end
      end
      a.cc, a.ct, a.cs = nil, nil, nil
    elseif a.csig and string.sub(a.csig, -1) ~= '|' then
      if call('HINCRBY', key('seats'), a.csig, -1) <= 0 then call('HDEL', key('seats'), a.csig) end
    end
    if #cc > 0 then call('HINCRBY', key('seats'), csig, 1) end
    a.csig = csig
  end
  if shown ~= a.shown then
    a.shown = shown
    emit({'presence', a.id, shown})
  end
end

local function keep_alive(a)
  a.exp = NOW + POL.ttl_ms
  call('ZADD', key('due', 'alive'), a.exp, a.id)
end

-- The heads of a channel's partitions, ordered by rank: heads:C:STEP, member the partition,
-- score its first task's rank (enq - prio * step_ms; STEP in the key, as a policy with another
-- step ranks differently). The member '' at -inf marks the index complete; one without it
-- (a new step, or data from before the index) is rebuilt from parts:C on first use. An agent
-- looking for work walks the heads in rank order and stops at the first it may take, so the
-- number of partitions (groups x priorities x skills) does not set the cost of a decision.
local function heads_key(c)
  return key('heads', c, POL.step_ms)
end

local function part_prio(part)
  return tonumber(string.match(part, '^[^|]*|[^|]*|([^|]*)'))
end

-- build a heads index h anew from the partitions listed in `parts`, each the sorted set
-- key(qkind, c, partition) (it was found without its mark)
local function rebuild_index(h, parts, qkind, c)
  call('DEL', h)
  call('ZADD', h, '-inf', '')
  for _, part in ipairs(call('SMEMBERS', parts)) do
    local head = call('ZRANGE', key(qkind, c, part), 0, 0, 'WITHSCORES')
    if #head > 0 then
      call('ZADD', h, tonumber(head[2]) - part_prio(part) * POL.step_ms, part)
    end
  end
end

local function rebuild_heads(c)
  rebuild_index(heads_key(c), key('parts', c), 'q', c)
end

-- outbound work (campaign contacts, docs/routing.md "Outbound work") has partitions of its
-- own, oq:C:G|TIERS|P, listed in oparts:C and ordered by their first task's rank in
-- oheads:C:STEP, marked and rebuilt as heads:C:STEP is; an inbound search never walks them
local function oheads_key(c)
  return key('oheads', c, POL.step_ms)
end

-- the partition, partitions set and heads index a task in line is filed in: its own
-- (q, parts, heads) or, for outbound work, (oq, oparts, oheads)
local function index_of(t)
  if (t.ob or '') ~= '' then
    return key('oq', t.ch, t.part), key('oparts', t.ch), oheads_key(t.ch)
  end
  return key('q', t.ch, t.part), key('parts', t.ch), heads_key(t.ch)
end

-- file a task that is in line (t.part set) in its partition and heads index, and inbound
-- work in `wait` (outbound work is not counted as waiting)
local function file(t)
  local q, parts, heads = index_of(t)
  call('ZADD', q, t.enq, t.id)
  call('SADD', parts, t.part)
  call('ZADD', heads, 'LT', t.enq - t.prio * POL.step_ms, t.part)
  if (t.ob or '') == '' then call('ZADD', key('wait', t.ch), t.enq, t.id) end
end

-- Put a task in line. `defer`: only in the task record for now (t.unfiled) — requeue files it
-- after match_task unless an offer or a hold took it out again, so work matched at once
-- costs no partition, heads or `wait` commands (nothing reads them within the one call).
-- Outbound work is filed at once: match_outbound finds it through its index.
local function line(t, defer)
  t.st, t.ag, t.res, t.hf = 'queued', '', '', ''
  local ob = (t.ob or '') ~= ''
  if ob then
    t.part = t.grp .. '|' .. t.ob .. '|' .. t.prio
  else
    t.part = t.grp .. '|' .. t.rs .. '|' .. t.prio
    if (t.sk or '') ~= '' then t.part = t.part .. '|' .. t.sk end
  end
  if defer and not ob then
    t.unfiled = true
  else
    file(t)
  end
end

-- the task's level timer off `due:level`; t.lt is its due time, 0 when it is known to have
-- none (a record without lt, written before lt existed, may have one)
local function clear_level(t)
  if t.lt ~= 0 then call('ZREM', key('due', 'level'), t.id) end
  t.lt = 0
end

-- take a queued task out of its partition or hold, and off its level and preference timers
-- (a preference timer runs exactly while the task is held)
local function unline(t)
  if t.unfiled then -- lined in this call and never filed: nothing to take back
    t.unfiled, t.part = nil, ''
    clear_level(t)
    return
  end
  if t.hf ~= '' then
    call('ZREM', key('hold', t.hf), t.id)
    call('ZREM', key('due', 'pref'), t.id)
    t.hf = ''
  elseif t.part ~= '' then
    local q, parts, heads = index_of(t)
    call('ZREM', q, t.id)
    local head = call('ZRANGE', q, 0, 0, 'WITHSCORES')
    if #head == 0 then
      call('SREM', parts, t.part)
      call('ZREM', heads, t.part)
    else
      call('ZADD', heads, 'XX', tonumber(head[2]) - t.prio * POL.step_ms, t.part)
    end
  end
  t.part = ''
  call('ZREM', key('wait', t.ch), t.id)
  clear_level(t)
end

local function hold(t, l, quiet)
  if not quiet then
    local why = 'away'
    if routable(l) then why = 'busy' end
    note(t, 'held', l.id, why .. '|' .. t.pu)
  end
  unline(t)
  t.hf = l.id
  call('ZADD', key('hold', l.id), t.enq, t.id)
  call('ZADD', key('wait', t.ch), t.enq, t.id)
  call('ZADD', key('due', 'pref'), t.pu, t.id)
end

local function offer(t, a, why)
  note(t, 'offered', a.id, why .. '|' .. a.tier)
  unline(t)
  local res = 'R' .. call('INCR', ANCHOR)
  local deadline = NOW + POL.res_ms
  call('HSET', key('res'), res, t.id)
  call('ZADD', key('due', 'res'), deadline, res)
  t.st, t.ag, t.res, t.dl = 'reserved', a.id, res, deadline
  a.load[t.ch] = (a.load[t.ch] or 0) + 1
  call('SADD', key('atasks', a.id), t.id)
  a.idle = NOW
  -- the queue counters are the inbound lines' (a campaign counts its own)
  if (t.ob or '') == '' then call('HINCRBY', key('stats', t.ch), 'offered', 1) end
  emit({'offer', res, t.id, a.id, t.ch, deadline})
  touch(a)
end

local function free_holder(t)
  local a = agent(t.ag)
  a.load[t.ch] = a.load[t.ch] - 1
  if t.st == 'wrapup' then a.wr = a.wr - 1 end
  call('SREM', key('atasks', a.id), t.id)
  if t.res ~= '' then
    call('HDEL', key('res'), t.res)
    call('ZREM', key('due', 'res'), t.res)
  end
  t.ag, t.res = '', ''
  touch(a)
  return a
end

local function schedule_level(t)
  local due = nil
  if t.rs == '' then
    for tier, l in pairs(levels(t.grp)) do
      local at = t.enq + l
      if allowed(t.grp, tier) and at > NOW and (due == nil or at < due) then due = at end
    end
  end
  for _, r in ipairs(reqs_of(t.sk)) do
    if not HARD[r[1]] then
      local at = t.enq + widen_ms(r[1])
      if at > NOW and (due == nil or at < due) then due = at end
    end
  end
  if due then
    call('ZADD', key('due', 'level'), due, t.id)
    t.lt = due
  else
    clear_level(t)
  end
end
