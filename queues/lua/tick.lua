-- tick.lua: fire what is due, each kind in turn, at most `limit` items of each by (due, member):
-- presence expiry, reservation deadlines, wrap-up ends, preference ends, level timers.
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack)
-- ARGV[4] - msgpack {limit}
-- Returns msgpack effect rows.

local function due(kind)
  if ARG.limit <= 0 then return {} end
  return call('ZRANGEBYSCORE', key('due', kind), '-inf', NOW, 'LIMIT', 0, ARG.limit)
end

return main(function()
  for _, id in ipairs(due('alive')) do
    local a = agent(id)
    if a then
      act('expired', id)
      go_offline(a, 'withdrawn')
    end
  end
  for _, res in ipairs(due('res')) do
    local tid = call('HGET', key('res'), res)
    local t = tid and task(tid)
    if t then
      local a = agent(t.ag)
      emit({'offer.revoked', res, t.id, a.id, 'timeout'})
      note(t, 'timed_out', a.id)
      exclude(t, a.id)
      -- away before the holder is freed: one touch, so no flicker through `available`
      a.chosen = 'away'
      free_holder(t)
      requeue(t)
    end
  end
  for _, id in ipairs(due('wrap')) do
    local t = task(id)
    if t then finish(t) end
  end
  for _, id in ipairs(due('pref')) do
    local t = task(id)
    if t and t.hf ~= '' then
      note(t, 'requeued', t.hf, 'preference_ended')
      unline(t)
      t.last = ''
      requeue(t)
    end
  end
  for _, id in ipairs(due('level')) do
    call('ZREM', key('due', 'level'), id)
    local t = task(id)
    if t then t.lt = 0 end
    if t and t.st == 'queued' and t.hf == '' then match_task(t) end
  end
end)
