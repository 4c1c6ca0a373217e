-- reject.lua: the agent declines its offer; the task goes back to its place, never to it again.
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack)
-- ARGV[4] - msgpack {res, agent}
-- Returns msgpack effect rows, or {err, msg}: not_found, forbidden (not yours), expired.

return main(function()
  local t, err = reservation(ARG.res, ARG.agent)
  if not t then return err end
  note(t, 'rejected', t.ag)
  exclude(t, t.ag)
  local a = free_holder(t)
  requeue(t)
  match_agent(a)
end)
