-- heartbeat.lua: keep a logged-in agent alive for another presence TTL; no effects.
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack)
-- ARGV[4] - msgpack {agent}
-- Returns msgpack [] , or {err, msg}: not_found (unknown), conflict (offline).

return main(function()
  local a, err = logged_in_agent(ARG.agent)
  if not a then return err end
  keep_alive(a)
end)
