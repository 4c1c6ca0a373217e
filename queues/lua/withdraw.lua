-- withdraw.lua: the customer left before an agent took the task: abandoned.
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack)
-- ARGV[4] - msgpack {task}
-- Returns msgpack effect rows, or {err, msg}: not_found, conflict (assigned or in wrap-up).

return main(function()
  local t, err = known_task(ARG.task)
  if not t then return err end
  if t.st == 'assigned' or t.st == 'wrapup' then
    return refuse('conflict', 'task ' .. t.id .. ' was answered; complete it instead')
  end
  local holder = nil
  note(t, 'ended', t.ag, 'abandoned')
  if t.st == 'reserved' then
    emit({'offer.revoked', t.res, t.id, t.ag, 'withdrawn'})
    holder = free_holder(t)
  else
    unline(t)
  end
  if not t.ans and not t.ob then call('HINCRBY', key('stats', t.ch), 'abandoned', 1) end
  delete_task(t)
  emit({'ended', t.id, holder and holder.id or '', 'abandoned'})
  if holder then match_agent(holder) end
end)
