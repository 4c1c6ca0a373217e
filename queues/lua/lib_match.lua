-- lib_match.lua: matching (docs/routing.md: match_task, match_agent with the heads walk,
-- outbound work after inbound) and the steps built on it (release_holds, requeue,
-- go_offline, finish). Follows lib_steps.lua in one chunk.

local match_outbound -- below: it matches agent-side, after best_task_for

local function match_task(t)
  if (t.ob or '') ~= '' then return match_outbound(t) end
  if t.last ~= '' and NOW < t.pu and t.rs == '' then
    local l = agent(t.last)
    if l and l.chosen ~= 'offline' and allowed(t.grp, l.tier) and not excludes(t, l.id)
        and hard_ok(l, reqs_of(t.sk)) then
      if routable(l) and free(l, t.ch) > 0 then offer(t, l, 'last_agent') else hold(t, l) end
      return
    end
    t.last = ''
  end
  local best, bidle = nil, nil
  for _, tier in ipairs(eligible_tiers(t)) do
    walk(key('ready', t.ch, tier), '+inf', function(id, idle)
      if best and not before(idle, id, bidle, best) then return true end
      local a = agent(id)
      if a and routable(a) and not excludes(t, id) and fits(a, t) then
        best, bidle = id, idle
        return true
      end
    end)
  end
  if best then
    offer(t, agent(best), 'longest_idle')
  else
    schedule_level(t)
  end
end

-- the best task for an agent: held work first, then the smallest (rank, enq, id) in line
local function best_task_for(a)
  local found = nil
  walk(key('hold', a.id), '+inf', function(id)
    local t = task(id)
    if free(a, t.ch) > 0 and allowed(t.grp, a.tier) and hard_ok(a, reqs_of(t.sk)) then
      found = t
      return true
    end
  end)
  if found then return found, 'last_agent' end
  local brank, benq, bid = nil, nil, nil
  -- one partition: its first task the agent may take, if it beats the best so far
  local function consider(c, part, hrank)
    local g, r, p, sig = string.match(part, '^([^|]*)|([^|]*)|([^|]*)|?(.*)$')
    local cutoff = nil
    if r ~= '' then
      if r == a.tier and allowed(g, r) then cutoff = NOW end
    elseif allowed(g, a.tier) then
      cutoff = NOW - open_ms(g, a.tier)
    end
    if cutoff and sig ~= '' then
      local skill_cut = skill_cutoff(a, reqs_of(sig))
      if skill_cut == nil then cutoff = nil else cutoff = math.min(cutoff, skill_cut) end
    end
    local step = tonumber(p) * POL.step_ms
    if not cutoff or hrank + step > cutoff then return end -- its head is too young already
    walk(key('q', c, part), cutoff, function(id, enq)
      local rank = enq - step
      if brank and not (rank < brank or (rank == brank and before(enq, id, benq, bid))) then
        return true
      end
      if not excluded(id, a.id) then
        brank, benq, bid = rank, enq, id
        return true
      end
    end)
  end
  for _, c in ipairs(CH) do
    if free(a, c) > 0 then
      local h = heads_key(c)
      local off, size, checked = 0, 8, false
      while true do
        local rows = call('ZRANGEBYSCORE', h, '-inf', '+inf', 'WITHSCORES', 'LIMIT', off, size)
        if not checked then
          checked = true
          if rows[1] ~= '' then -- not indexed yet: build it, then read it again
            rebuild_heads(c)
            rows = call('ZRANGEBYSCORE', h, '-inf', '+inf', 'WITHSCORES', 'LIMIT', off, size)
          end
        end
        local done = false
        for i = 1, #rows, 2 do
          local part = rows[i]
          if part ~= '' then
            local hrank = tonumber(rows[i + 1])
            if brank and hrank > brank then
              done = true
              break
            end
            consider(c, part, hrank)
          end
        end
        if done or #rows < 2 * size then break end
        off = off + size
        size = 32
      end
    end
  end
  if bid then return task(bid), 'next_in_line' end
  return nil
end

-- may the agent be offered outbound work: routable, no work at all, room for a call
local function may_dial(a)
  if not routable(a) or (a.cap.voice or 0) <= 0 then return false end
  for _, c in ipairs(CH) do
    if (a.load[c] or 0) > 0 then return false end
  end
  return true
end

local function has_tier(tiers, tier)
  for t in string.gmatch(tiers, '[^,]+') do
    if t == tier then return true end
  end
  return false
end

-- agent-side, once its inbound search found nothing: the smallest (rank, enq, id) first task
-- of the outbound partitions its tier may work, walked by their heads
local function best_outbound_for(a)
  local brank, benq, bid = nil, nil, nil
  local h = oheads_key('voice')
  local rows = call('ZRANGE', h, 0, -1, 'WITHSCORES')
  if rows[1] ~= '' then -- not marked (new, or under another step): build it, read it again
    rebuild_index(h, key('oparts', 'voice'), 'oq', 'voice')
    rows = call('ZRANGE', h, 0, -1, 'WITHSCORES')
  end
  for i = 3, #rows, 2 do -- rows[1] is the mark
    local part, hrank = rows[i], tonumber(rows[i + 1])
    if brank and hrank > brank then break end
    local g, tiers, p = string.match(part, '^([^|]*)|([^|]*)|([^|]*)$')
    if has_tier(tiers, a.tier) and allowed(g, a.tier) then
      local step = tonumber(p) * POL.step_ms
      walk(key('oq', 'voice', part), '+inf', function(id, enq)
        if excluded(id, a.id) then return false end
        local rank = enq - step
        if not brank or rank < brank or (rank == brank and before(enq, id, benq, bid)) then
          brank, benq, bid = rank, enq, id
        end
        return true
      end)
    end
  end
  if bid then return task(bid), 'outbound' end
  return nil
end

local function match_agent(a)
  while routable(a) do
    local t, why = best_task_for(a)
    if not t and may_dial(a) then t, why = best_outbound_for(a) end
    if not t then return end
    offer(t, a, why)
  end
end

-- task-side for outbound work: the first agent by (idle, id) of the tiers both the campaign
-- and the group allow that may dial is matched agent-side — its inbound search first, so
-- inbound work that waits for it goes to it instead; repeated while t waits and such an
-- agent is found (each one leaves with work)
match_outbound = function(t)
  local tiers = {}
  for tier in string.gmatch(t.ob, '[^,]+') do
    if allowed(t.grp, tier) then tiers[#tiers + 1] = tier end
  end
  while t.st == 'queued' do
    local best, bidle = nil, nil
    for _, tier in ipairs(tiers) do
      walk(key('ready', t.ch, tier), '+inf', function(id, idle)
        if best and not before(idle, id, bidle, best) then return true end
        local a = agent(id)
        if a and may_dial(a) and not excludes(t, id) then
          best, bidle = id, idle
          return true
        end
      end)
    end
    if not best then return end
    match_agent(agent(best))
  end
end

local function release_holds(a)
  for _, id in ipairs(call('ZRANGE', key('hold', a.id), 0, -1)) do
    local t = task(id)
    note(t, 'requeued', a.id, 'last_agent_left')
    unline(t)
    t.last = ''
    line(t)
    match_task(t)
  end
end

local function requeue(t)
  line(t, true)
  match_task(t)
  if t.unfiled then -- neither offered nor held: it waits in line
    t.unfiled = nil
    file(t)
  end
end

local function go_offline(a, reason)
  if a.chosen == 'offline' then return end
  a.chosen = 'offline'
  local left = add_logged(a.tier, -1)
  a.exp = 0
  call('ZREM', key('due', 'alive'), a.id)
  touch(a)
  for _, id in ipairs(sorted(call('SMEMBERS', key('atasks', a.id)))) do
    local t = task(id)
    if t.st == 'reserved' then
      emit({'offer.revoked', t.res, t.id, a.id, reason})
      note(t, 'requeued', a.id, reason)
      free_holder(t)
      requeue(t)
    end
  end
  release_holds(a)
  if left == 0 and POL.empty then
    -- every routable agent is in some ready(C, T); the others could not take anything anyway
    local idle, ids = {}, {}
    for _, c in ipairs(CH) do
      for _, tier in ipairs(TIERS) do
        local rows = call('ZRANGE', key('ready', c, tier), 0, -1, 'WITHSCORES')
        for i = 1, #rows, 2 do
          if idle[rows[i]] == nil then
            idle[rows[i]] = tonumber(rows[i + 1])
            ids[#ids + 1] = rows[i]
          end
        end
      end
    end
    table.sort(ids, function(x, y) return before(idle[x], x, idle[y], y) end)
    for _, id in ipairs(ids) do
      local other = agent(id)
      if routable(other) then match_agent(other) end
    end
  end
end

local function delete_task(t)
  call('ZREM', key('due', 'wrap'), t.id)
  if t.hf ~= '' then call('ZREM', key('due', 'pref'), t.id) end
  clear_level(t)
  if not t.nx then call('DEL', key('excl', t.id)) end
  call('SREM', key('cust', t.cust), t.id)
  call('SREM', key('tasks'), t.id)
  -- its decisions outlive it by why_ms, under its conversation (the id before '~')
  local conv = string.match(t.id, '^([^~]*)')
  call('HSET', key('why', conv), t.id .. '@' .. t.enq, t.tr or '')
  call('PEXPIRE', key('why', conv), POL.why_ms)
  TK[t.id] = false
end

-- end a task whose work is done; its holder looks for work now, or is added to `later` for
-- the caller to match once its own step is over
local function finish(t, later)
  note(t, 'ended', t.ag, 'completed')
  local a = free_holder(t)
  delete_task(t)
  emit({'ended', t.id, a.id, 'completed'})
  if later then later[#later + 1] = a else match_agent(a) end
end
