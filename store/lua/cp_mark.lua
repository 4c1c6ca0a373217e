-- cp_mark.lua: a contact's conditional move (store.campaigns.CampaignStore.mark).
-- ARGV[2] - msgpack {id, contact, n, expect = [statuses], status, conversation?, disposition?,
--           due?, dialled (bool), now}
-- Returns msgpack true when applied, false when the contact is not at claim n in one of the
-- expected statuses (nothing changed).

local c = contact(ARG.id, ARG.contact)
if not c or c.n ~= ARG.n then return cmsgpack.pack(false) end
local ok = false
for _, st in ipairs(ARG.expect) do
  if c.status == st then ok = true end
end
if not ok then return cmsgpack.pack(false) end
if ARG.conversation then c.conversation = ARG.conversation end
if ARG.dialled then
  c.dials = c.dials + 1
  c.dialled_n = ARG.n
end
if ARG.disposition then
  c.disposition = ARG.disposition
  c.outcomes[#c.outcomes + 1] = {ARG.n, ARG.disposition, ARG.now}
  count(ARG.id, 'outcome:' .. ARG.disposition, 1)
  if ARG.status == 'done' then count(ARG.id, 'done:' .. ARG.disposition, 1) end
end
if ARG.status ~= c.status then
  if ARG.due then c.due_ms = ARG.due end
  move(ARG.id, c, ARG.status)
end
save(ARG.id, c)
return cmsgpack.pack(true)
