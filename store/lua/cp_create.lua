-- cp_create.lua: a new campaign with its contacts and do-not-call entries.
-- ARGV[2] - msgpack {campaign = record, contacts = [contact (store.campaigns.new_contact)],
--           dnc = [entries]}
-- Returns msgpack the campaign's view, or {err, msg}: exists.

local id = ARG.campaign.id
if call('EXISTS', key('cp', id)) == 1 then
  return cmsgpack.pack(refuse('campaign_exists', 'campaign ' .. id .. ' exists'))
end
call('SET', key('cp', id), cmsgpack.pack(ARG.campaign))
call('SADD', KEYS[1], id)
for _, entry in ipairs(ARG.dnc) do call('SADD', key('cpdnc', id), entry) end
for _, c in ipairs(ARG.contacts) do add_contact(id, c) end
return cmsgpack.pack(view(id))
