-- lib.lua: the shared helpers every routing operation starts with (docs/routing.md, step by step).
-- The engine loads lib.lua and every operation as one Redis function library (queues/redis.py):
-- this file's top level runs once per load, and each call starts with begin(KEYS, ARGV).
-- KEYS[1] - the domain anchor: its reservation counter, omniroute:{DOMAIN}:seq
-- ARGV[1] - the key prefix, omniroute:{DOMAIN}:
-- ARGV[2] - now, in ms since the epoch (time is passed in; never TIME)
-- ARGV[3] - the policy, msgpack of Policy.to_wire()
-- ARGV[4] - the operation's arguments, msgpack map
-- Returns (via run): msgpack of the effect rows, or of {err = code, msg = text} when refused.
-- Records (agent:ID, task:ID) are msgpack blobs read once per call, cached, and written back
-- at the end only when they changed; indexes (zsets, sets, hashes) are written as we go.
-- Refusals are decided before the first write, so a refused call changes nothing.

-- the state of one call, set by begin(); the policy's decoded tables are kept between calls
-- (keyed by the policy's bytes: decoding them is a good part of a small call's cost)
local ANCHOR, PREFIX, NOW, POL, ARG, CH, TIERS, FX
local ALLOWED, BLOCKS, HARD
local AG, TK, RAW_A, RAW_T, LOGGED
local POLICIES, POLICY_COUNT = {}, 0

local function decode_policy(raw)
  local pol = cmsgpack.unpack(raw)
  local allowed_by = {}
  for g, tiers in pairs(pol.elig) do
    allowed_by[g] = {}
    for _, t in ipairs(tiers) do allowed_by[g][t] = true end
  end
  local blocks = {}
  for _, c in ipairs(pol.blocks) do blocks[c] = true end
  local hard = {}
  for _, name in ipairs(pol.sk_hard or {}) do hard[name] = true end
  return {pol, allowed_by, blocks, hard}
end

local function begin(keys, argv)
  ANCHOR = keys[1]
  PREFIX = argv[1]
  NOW = tonumber(argv[2])
  local known = POLICIES[argv[3]]
  if known == nil then
    known = decode_policy(argv[3])
    if POLICY_COUNT >= 8 then POLICIES, POLICY_COUNT = {}, 0 end -- a few policies at a time
    POLICIES[argv[3]] = known
    POLICY_COUNT = POLICY_COUNT + 1
  end
  POL, ALLOWED, BLOCKS, HARD = known[1], known[2], known[3], known[4]
  CH, TIERS = POL.channels, POL.tiers
  ARG = cmsgpack.unpack(argv[4])
  FX, AG, TK, RAW_A, RAW_T, LOGGED = {}, {}, {}, {}, {}, {}
end

-- the one key builder: omniroute:{DOMAIN}:part1:part2...
local function key(...)
  return PREFIX .. table.concat({...}, ':')
end

local function call(...)
  return redis.call(...)
end

local function emit(row)
  FX[#FX + 1] = row
end

local function refuse(code, msg)
  return {err = code, msg = msg}
end

-- byte-wise string order (Lua's `<` follows the server locale; zsets and Python use bytes)
local function sless(a, b)
  if a == b then return false end
  local n = math.min(#a, #b)
  local i = 1
  while i <= n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
    i = i + 1
  end
  return #a < #b
end

local function sorted(list)
  table.sort(list, sless)
  return list
end

-- policy ------------------------------------------------------------------------------------

local function allowed(g, t)
  return ALLOWED[g] ~= nil and ALLOWED[g][t] == true
end

local function levels(g)
  return POL.lvl[g] or {}
end

-- records -----------------------------------------------------------------------------------

-- a record (kind 'agent' or 'task') read once per script: cached in `cache`, its raw bytes in
-- `raws` so that flush() writes back only what changed; false caches "no such record"
local function load(cache, raws, kind, id)
  local rec = cache[id]
  if rec == nil then
    local raw = call('GET', key(kind, id))
    if raw then
      rec = cmsgpack.unpack(raw)
      raws[id] = raw
    else
      rec = false
    end
    cache[id] = rec
  end
  return rec or nil
end

local function agent(id) return load(AG, RAW_A, 'agent', id) end
local function task(id) return load(TK, RAW_T, 'task', id) end

local function flush()
  for id, a in pairs(AG) do
    if a then
      local raw = cmsgpack.pack(a)
      if raw ~= RAW_A[id] then call('SET', key('agent', id), raw) end
    end
  end
  for id, t in pairs(TK) do
    if t then
      local raw = cmsgpack.pack(t)
      if raw ~= RAW_T[id] then call('SET', key('task', id), raw) end
    elseif RAW_T[id] then
      call('DEL', key('task', id))
    end
  end
end

-- the shared entry point: run the operation, then either refuse or write back and report
local function main(op)
  local err = op()
  if err then return cmsgpack.pack(err) end
  flush()
  return cmsgpack.pack(FX)
end

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

-- explain and replay (queues/trace.py) ----------------------------------------------------

-- one routing decision of t, in its record (no command of its own: the record is written
-- anyway). t.tr is the rows as one msgpack stream (a string: appending costs one small pack,
-- and reading or writing the record copies it rather than decoding it); t.trn counts them.
-- The first row (the arrival) and the latest why_n - 1 are kept.
local function note(t, kind, aid, detail)
  local row = cmsgpack.pack({NOW, kind, aid or '', detail or ''})
  local n = (t.trn or 0) + 1
  if n > math.max(2, POL.why_n) then
    local rows = {cmsgpack.unpack(t.tr)}
    table.remove(rows, 2)
    for i, r in ipairs(rows) do rows[i] = cmsgpack.pack(r) end
    t.tr = table.concat(rows) .. row
    n = n - 1
  else
    t.tr = (t.tr or '') .. row
  end
  t.trn = n
end

-- the rows of a trace stream, as a list
local function rows_of(stream)
  if stream == nil or stream == '' then return {} end
  return {cmsgpack.unpack(stream)}
end

-- one agent action for replay, scored by its time; older than rec_ms is dropped
local function act(kind, aid, detail)
  local k = key('act')
  call('ZADD', k, NOW, cmsgpack.pack({NOW, kind, aid, detail or ''}))
  call('ZREMRANGEBYSCORE', k, '-inf', '(' .. (NOW - POL.rec_ms))
end

local function excluded(tid, aid)
  return call('SISMEMBER', key('excl', tid), aid) == 1
end

-- (score, member) ascending, members byte-wise: the order of a sorted set
local function before(s1, m1, s2, m2)
  return s1 < s2 or (s1 == s2 and sless(m1, m2))
end

local PAGE = 16

-- walk a sorted set from its head (scores <= max) a page at a time; stop when fn returns true.
-- The first page is one row: nearly every walk stops at the head (an excluded or expired
-- entry is rare), and each row read costs Lua time.
local function walk(k, max, fn)
  local off, size = 0, 1
  while true do
    local rows = call('ZRANGEBYSCORE', k, '-inf', max, 'WITHSCORES', 'LIMIT', off, size)
    for i = 1, #rows, 2 do
      if fn(rows[i], tonumber(rows[i + 1])) then return end
    end
    if #rows < 2 * size then return end
    off = off + size
    size = PAGE
  end
end

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

local function ensure_heads(c, first)
  if first and first[1] == '' then return end
  local h = heads_key(c)
  call('DEL', h)
  call('ZADD', h, '-inf', '')
  for _, part in ipairs(call('SMEMBERS', key('parts', c))) do
    local head = call('ZRANGE', key('q', c, part), 0, 0, 'WITHSCORES')
    if #head > 0 then
      call('ZADD', h, tonumber(head[2]) - part_prio(part) * POL.step_ms, part)
    end
  end
end

local function line(t)
  t.st, t.ag, t.res, t.hf = 'queued', '', '', ''
  t.part = t.grp .. '|' .. t.rs .. '|' .. t.prio
  if (t.sk or '') ~= '' then t.part = t.part .. '|' .. t.sk end
  call('ZADD', key('q', t.ch, t.part), t.enq, t.id)
  call('SADD', key('parts', t.ch), t.part)
  call('ZADD', heads_key(t.ch), 'LT', t.enq - t.prio * POL.step_ms, t.part)
  call('ZADD', key('wait', t.ch), t.enq, t.id)
end

-- take a queued task out of its partition or hold, and off its level and preference timers
local function unline(t)
  if t.hf ~= '' then
    call('ZREM', key('hold', t.hf), t.id)
    t.hf = ''
  elseif t.part ~= '' then
    local q = key('q', t.ch, t.part)
    call('ZREM', q, t.id)
    local head = call('ZRANGE', q, 0, 0, 'WITHSCORES')
    if #head == 0 then
      call('SREM', key('parts', t.ch), t.part)
      call('ZREM', heads_key(t.ch), t.part)
    else
      call('ZADD', heads_key(t.ch), 'XX', tonumber(head[2]) - t.prio * POL.step_ms, t.part)
    end
  end
  t.part = ''
  call('ZREM', key('wait', t.ch), t.id)
  call('ZREM', key('due', 'level'), t.id)
  call('ZREM', key('due', 'pref'), t.id)
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
  call('HINCRBY', key('stats', t.ch), 'offered', 1)
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
  else
    call('ZREM', key('due', 'level'), t.id)
  end
end

local function match_task(t)
  if t.last ~= '' and NOW < t.pu and t.rs == '' then
    local l = agent(t.last)
    if l and l.chosen ~= 'offline' and allowed(t.grp, l.tier) and not excluded(t.id, l.id)
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
      if a and routable(a) and not excluded(t.id, id) and fits(a, t) then
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
            ensure_heads(c, rows)
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

local function match_agent(a)
  while routable(a) do
    local t, why = best_task_for(a)
    if not t then return end
    offer(t, a, why)
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
  line(t)
  match_task(t)
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
  call('ZREM', key('due', 'pref'), t.id)
  call('ZREM', key('due', 'level'), t.id)
  call('DEL', key('excl', t.id))
  call('SREM', key('cust', t.cust), t.id)
  call('SREM', key('tasks'), t.id)
  -- its decisions outlive it by why_ms, under its conversation (the id before '~')
  local conv = string.match(t.id, '^([^~]*)')
  call('HSET', key('why', conv), t.id .. '@' .. t.enq, t.tr or '')
  call('PEXPIRE', key('why', conv), POL.why_ms)
  TK[t.id] = false
end

local function finish(t)
  note(t, 'ended', t.ag, 'completed')
  local a = free_holder(t)
  delete_task(t)
  emit({'ended', t.id, a.id, 'completed'})
  match_agent(a)
end

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
  return v
end
