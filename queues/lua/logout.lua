-- logout.lua: the agent goes offline; its offers are revoked and re-queued, its holds released.
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack)
-- ARGV[4] - msgpack {agent}
-- Returns msgpack effect rows, or {err, msg}: not_found (unknown agent).

return main(function()
  local a, err = known_agent(ARG.agent)
  if not a then return err end
  if a.chosen ~= 'offline' then act('logout', a.id) end
  go_offline(a, 'withdrawn')
end)
