-- stats.lua: the queue view, one row per channel in policy order; reads only.
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack); ARGV[4] - msgpack {}
-- Returns msgpack [{name, waiting, longest_ms, offered, answered, answered_sl, answer_ms
-- (waiting time of the answered, summed), abandoned,
-- agents: {tier: {state: n}}}] (an empty map may come back as an empty array).

local rows = {}
for _, c in ipairs(CH) do
  local first = call('ZRANGE', key('wait', c), 0, 0, 'WITHSCORES')
  local row = {name = c, waiting = call('ZCARD', key('wait', c)), longest_ms = 0,
               offered = 0, answered = 0, answered_sl = 0, answer_ms = 0, abandoned = 0,
               agents = {}}
  if #first > 0 then row.longest_ms = NOW - tonumber(first[2]) end
  local counters = call('HGETALL', key('stats', c))
  for i = 1, #counters, 2 do row[counters[i]] = tonumber(counters[i + 1]) end
  local seats = call('HGETALL', key('seats', c))
  for i = 1, #seats, 2 do
    local n = tonumber(seats[i + 1])
    if n > 0 then
      local tier, state = string.match(seats[i], '^([^|]*)|(.*)$')
      row.agents[tier] = row.agents[tier] or {}
      row.agents[tier][state] = n
    end
  end
  rows[#rows + 1] = row
end
return cmsgpack.pack(rows)
