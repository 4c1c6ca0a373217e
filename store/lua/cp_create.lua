-- cp_create.lua: a new campaign with its contacts and do-not-call entries; or, with `load`, the
-- first step of a create too large for one script: the record alone, in state `loading` under
-- that token (cp_load.lua adds the rest and ends it). A create of an id whose earlier create
-- has not ended (its node died, or it is still under way: that one's next step is refused)
-- replaces it.
-- ARGV[2] - msgpack {campaign = record, contacts = [contact (store.campaigns.new_contact)],
--           dnc = [entries], load = token (optional)}
-- Returns msgpack the campaign's view (true for a `load`), or {err, msg}: exists.

local id = ARG.campaign.id
local raw = call('GET', key('cp', id))
if raw then
  if cmsgpack.unpack(raw).state ~= 'loading' then
    return cmsgpack.pack(refuse('campaign_exists', 'campaign ' .. id .. ' exists'))
  end
  for _, name in ipairs(CAMPAIGN_KEYS) do call('UNLINK', key(name, id)) end
end
local cp = ARG.campaign
cp.by = 2 -- contacts indexed in cpby (the sorted set; cp_lib.lua)
if ARG.load then
  cp.after, cp.state, cp.load = cp.state, 'loading', ARG.load
else
  call('SADD', KEYS[1], id)
end
call('SET', key('cp', id), cmsgpack.pack(cp))
for _, entry in ipairs(ARG.dnc) do call('SADD', key('cpdnc', id), entry) end
for _, c in ipairs(ARG.contacts) do add_contact(id, c) end
if ARG.load then
  keep_for(id, LOAD_TTL_MS)
  return cmsgpack.pack(true)
end
return cmsgpack.pack(view(id))
