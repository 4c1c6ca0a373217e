-- transfer.lua: hand an assigned task to one agent (offered at once) or to a tier (queued).
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack)
-- ARGV[4] - msgpack {task, agent, to_agent, to_tier} (exactly one of the last two non-empty)
-- Returns msgpack effect rows, or {err, msg}: not_found, forbidden (not its holder, or the
-- hard filter, or a hard skill the target lacks), conflict (not assigned; target is the holder, not routable or full).

return main(function()
  local t, err = held_task(ARG.task, ARG.agent, 'assigned')
  if not t then return err end
  local x = nil
  if ARG.to_agent ~= '' then
    x, err = known_agent(ARG.to_agent)
    if not x then return err end
    if x.id == t.ag then
      return refuse('conflict', 'a task cannot be transferred to its own holder')
    end
    if not allowed(t.grp, x.tier) then
      return refuse('forbidden', 'tier ' .. x.tier .. ' may not take ' .. t.grp .. ' work')
    end
    if not hard_ok(x, reqs_of(t.sk)) then
      return refuse('forbidden', 'agent ' .. x.id .. ' lacks a skill ' .. t.id .. ' requires')
    end
    if not routable(x) or free(x, t.ch) <= 0 then
      return refuse('conflict', 'agent ' .. x.id .. ' cannot take ' .. t.ch .. ' work now')
    end
  elseif not allowed(t.grp, ARG.to_tier) then
    return refuse('forbidden', 'tier ' .. ARG.to_tier .. ' may not take ' .. t.grp .. ' work')
  end
  emit({'assignment.revoked', t.id, t.ag, 'transferred'})
  if x then note(t, 'transferred', t.ag, 'agent:' .. x.id) else note(t, 'transferred', t.ag, 'tier:' .. ARG.to_tier) end
  local source = free_holder(t)
  t.last = ''
  if x then
    t.rs = ''
    call('SREM', key('excl', t.id), x.id)
    offer(t, x, 'transfer')
  else
    t.rs = ARG.to_tier
    exclude(t, source.id)
    requeue(t)
  end
  match_agent(source)
end)
