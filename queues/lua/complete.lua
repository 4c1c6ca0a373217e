-- complete.lua: the agent finished; wrap-up holds the capacity (docs/routing.md, `complete`).
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack)
-- ARGV[4] - msgpack {task, agent}
-- Returns msgpack effect rows, or {err, msg}: not_found, forbidden (not its holder),
-- conflict (not assigned).

return main(function()
  local t, err = held_task(ARG.task, ARG.agent, 'assigned')
  if not t then return err end
  note(t, 'completed', t.ag)
  local wrap = POL.wrap_ms[t.ch] or 0
  if wrap <= 0 then
    finish(t)
    return
  end
  local a = agent(t.ag)
  t.st = 'wrapup'
  a.wr = a.wr + 1
  call('ZADD', key('due', 'wrap'), NOW + wrap, t.id)
  touch(a)
end)
