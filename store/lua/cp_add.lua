-- cp_add.lua: contacts added to a campaign. ARGV[2] - msgpack {id, contacts}
-- Returns msgpack [added, duplicates], or {err, msg}: unknown, stopped.

local cp = campaign(ARG.id)
if not cp then return cmsgpack.pack(unknown(ARG.id)) end
if cp.state == 'stopped' then
  return cmsgpack.pack(refuse('campaign_stopped', 'campaign ' .. ARG.id .. ' is stopped'))
end
local added = 0
for _, c in ipairs(ARG.contacts) do
  if add_contact(ARG.id, c) then added = added + 1 end
end
return cmsgpack.pack({added, #ARG.contacts - added})
