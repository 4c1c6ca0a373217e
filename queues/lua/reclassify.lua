-- reclassify.lua: change a customer's client group; work its holders may no longer take moves,
-- and a wrap-up they may no longer see ends.
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack)
-- ARGV[4] - msgpack {customer, group}
-- Returns msgpack effect rows (none for an unknown customer).

return main(function()
  local g = ARG.group
  local freed = {}
  for _, id in ipairs(sorted(call('SMEMBERS', key('cust', ARG.customer)))) do
    local t = task(id)
    if t.grp ~= g then note(t, 'reclassified', '', t.grp .. '>' .. g) end
    if t.st == 'queued' then
      local held = nil
      if t.hf ~= '' then held = agent(t.hf) end
      unline(t)
      t.grp = g
      if t.rs ~= '' and not allowed(g, t.rs) then t.rs = '' end
      if held and allowed(g, held.tier) then
        hold(t, held, true)
      else
        if held then
          note(t, 'requeued', held.id, 'reclassified')
          t.last = ''
        end
        requeue(t)
      end
    else
      t.grp = g
      if t.rs ~= '' and not allowed(g, t.rs) then t.rs = '' end
      if not allowed(g, agent(t.ag).tier) then
        if t.st == 'reserved' then
          emit({'offer.revoked', t.res, t.id, t.ag, 'reclassified'})
        else
          emit({'assignment.revoked', t.id, t.ag, 'reclassified'})
        end
        if t.st == 'wrapup' then
          finish(t, freed) -- answered already: its wrap-up ends here
        else
          note(t, 'requeued', t.ag, 'reclassified')
          freed[#freed + 1] = free_holder(t)
          requeue(t)
        end
      end
    end
  end
  for _, a in ipairs(freed) do match_agent(a) end
end)
