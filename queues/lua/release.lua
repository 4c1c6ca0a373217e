-- release.lua: an agent gives an assigned task back; it returns to its place in line.
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack)
-- ARGV[4] - msgpack {task, agent}
-- Returns msgpack effect rows, or {err, msg}: not_found, forbidden (not its holder),
-- conflict (not assigned).

return main(function()
  local t, err = held_task(ARG.task, ARG.agent, 'assigned')
  if not t then return err end
  emit({'assignment.revoked', t.id, t.ag, 'released'})
  note(t, 'requeued', t.ag, 'released')
  local a = free_holder(t)
  requeue(t)
  match_agent(a)
end)
