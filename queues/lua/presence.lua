-- presence.lua: the agent's own choice, `available` or `away` (docs/routing.md, `presence`).
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack)
-- ARGV[4] - msgpack {agent, state}
-- Returns msgpack effect rows, or {err, msg}: not_found (unknown), conflict (offline).

return main(function()
  local a, err = logged_in_agent(ARG.agent)
  if not a then return err end
  keep_alive(a)
  if ARG.state == 'available' and a.chosen ~= 'available' then a.idle = NOW end
  a.chosen = ARG.state
  touch(a)
  act('presence', a.id, ARG.state)
  if ARG.state == 'available' then match_agent(a) end
end)
