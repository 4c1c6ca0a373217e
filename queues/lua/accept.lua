-- accept.lua: the agent takes its offered task (docs/routing.md, `accept`).
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack)
-- ARGV[4] - msgpack {res, agent}
-- Returns msgpack effect rows, or {err, msg}: not_found, forbidden (not yours), expired.

return main(function()
  local t, err = reservation(ARG.res, ARG.agent)
  if not t then return err end
  call('HDEL', key('res'), t.res)
  call('ZREM', key('due', 'res'), t.res)
  t.st, t.res = 'assigned', ''
  note(t, 'assigned', t.ag)
  if not t.ans and not t.ob then -- the queue counters are the inbound lines'
    t.ans = true
    call('HINCRBY', key('stats', t.ch), 'answered', 1)
    call('HINCRBY', key('stats', t.ch), 'answer_ms', NOW - t.enq)
    if NOW - t.enq <= POL.sl_ms then call('HINCRBY', key('stats', t.ch), 'answered_sl', 1) end
  end
  emit({'assigned', t.id, t.ag, t.ch})
  touch(agent(t.ag))
end)
