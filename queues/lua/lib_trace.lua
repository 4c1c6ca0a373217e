-- lib_trace.lua: the notes explain and replay read (queues/trace.py), and the reads of indexes
-- the steps share (exclusions, sorted-set order, walk). Follows lib_rules.lua in one chunk.

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

-- as excluded, for a task record at hand: t.nx marks one that has never excluded anyone
local function excludes(t, aid)
  return not t.nx and excluded(t.id, aid)
end

-- agent aid refused task t (reject, timeout, transfer away)
local function exclude(t, aid)
  call('SADD', key('excl', t.id), aid)
  t.nx = nil
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
