-- login.lua: create or refresh an agent; logged in and `away` (docs/routing.md, `login`).
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack)
-- ARGV[4] - msgpack {agent, tier, cap: {channel: n}, sk: {skill: proficiency}}
-- Returns msgpack effect rows, or {err, msg}: conflict on a tier change while holding work.

return main(function()
  local id, tier = ARG.agent, ARG.tier
  local a = agent(id)
  if a and a.tier ~= tier then
    for _, tid in ipairs(call('SMEMBERS', key('atasks', id))) do
      local st = task(tid).st
      if st == 'reserved' or st == 'assigned' then
        return refuse('conflict', 'agent ' .. id .. ' holds work; its tier cannot change now')
      end
    end
  end
  if not a then
    local load = {}
    for _, c in ipairs(CH) do load[c] = 0 end
    a = {id = id, tier = tier, cap = ARG.cap, idle = NOW, chosen = 'offline', shown = 'offline',
         load = load, wr = 0, exp = 0}
    AG[id] = a
    call('SADD', key('agents'), id)
  end
  if a.chosen ~= 'offline' and a.tier ~= tier then
    add_logged(a.tier, -1)
    add_logged(tier, 1)
  end
  a.tier, a.cap, a.sk = tier, ARG.cap, ARG.sk or {}
  if a.chosen == 'offline' then
    a.chosen = 'away'
    add_logged(tier, 1)
  end
  keep_alive(a)
  touch(a)
  local caps = {}
  for _, c in ipairs(CH) do caps[#caps + 1] = c .. '=' .. (a.cap[c] or 0) end
  act('login', id, tier .. '|' .. table.concat(caps, ','))
end)
