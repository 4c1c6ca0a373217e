-- cp_read.lua: reads only. ARGV[2] - msgpack {what = 'campaign'|'campaigns'|'contact'|'line',
-- id, contact}. Returns msgpack the view(s), the contact or the contacts in line, or nil.

if ARG.what == 'campaigns' then
  local out = {}
  local ids = call('SMEMBERS', KEYS[1])
  table.sort(ids)
  for _, id in ipairs(ids) do out[#out + 1] = view(id) end
  return cmsgpack.pack(out)
end
if ARG.what == 'campaign' then return cmsgpack.pack(view(ARG.id)) end
if ARG.what == 'contact' then
  if not campaign(ARG.id) then return cmsgpack.pack(nil) end -- none, or still loading
  return cmsgpack.pack(contact(ARG.id, ARG.contact))
end
if not campaign(ARG.id) then return cmsgpack.pack(unknown(ARG.id)) end
local ids = call('SMEMBERS', key('cpline', ARG.id))
table.sort(ids)
local out = {}
for _, cid in ipairs(ids) do out[#out + 1] = contact(ARG.id, cid) end
return cmsgpack.pack(out)
