-- wrapup_done.lua: end wrap-up early; the task ends and the capacity is free again.
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack)
-- ARGV[4] - msgpack {task, agent}
-- Returns msgpack effect rows, or {err, msg}: not_found, forbidden (not its holder),
-- conflict (not in wrap-up).

return main(function()
  local t, err = held_task(ARG.task, ARG.agent, 'wrapup')
  if not t then return err end
  finish(t)
end)
