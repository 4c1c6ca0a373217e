-- stats.lua: the queue view, one row per channel in policy order; reads only.
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack); ARGV[4] - msgpack {}
-- Returns msgpack [{name, waiting, longest_ms, offered, answered, answered_sl, answer_ms
-- (waiting time of the answered, summed), abandoned,
-- agents: {tier: {state: n}}}] (an empty map may come back as an empty array).

-- seats: one field per (tier, shown, channels) in `seats`; agents counted before that layout
-- are still in the per-channel hashes `seats:C` (tier|shown) until they next change
local seated = {}
local function seat(c, tier, state, n)
  if n <= 0 then return end
  seated[c] = seated[c] or {}
  seated[c][tier] = seated[c][tier] or {}
  seated[c][tier][state] = (seated[c][tier][state] or 0) + n
end
local combined = call('HGETALL', key('seats'))
for i = 1, #combined, 2 do
  local tier, state, chans = string.match(combined[i], '^([^|]*)|([^|]*)|(.*)$')
  for c in string.gmatch(chans, '[^,]+') do seat(c, tier, state, tonumber(combined[i + 1])) end
end

local rows = {}
for _, c in ipairs(CH) do
  local first = call('ZRANGE', key('wait', c), 0, 0, 'WITHSCORES')
  local row = {name = c, waiting = call('ZCARD', key('wait', c)), longest_ms = 0,
               offered = 0, answered = 0, answered_sl = 0, answer_ms = 0, abandoned = 0,
               agents = {}}
  if #first > 0 then row.longest_ms = NOW - tonumber(first[2]) end
  local counters = call('HGETALL', key('stats', c))
  for i = 1, #counters, 2 do row[counters[i]] = tonumber(counters[i + 1]) end
  local earlier = call('HGETALL', key('seats', c))
  for i = 1, #earlier, 2 do
    local tier, state = string.match(earlier[i], '^([^|]*)|(.*)$')
    seat(c, tier, state, tonumber(earlier[i + 1]))
  end
  row.agents = seated[c] or {}
  rows[#rows + 1] = row
end
return cmsgpack.pack(rows)
