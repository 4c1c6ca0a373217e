-- cp_load.lua: one step of a create too large for one script (store/campaigns_redis.py), after
-- cp_create.lua with `load`: do-not-call entries or contacts added to the campaign still
-- loading under that token, whose keys then expire an hour later unless another step comes;
-- the step with `done` gives it the state it was created with, keeps its keys and lists it,
-- and from then on it is seen.
-- ARGV[2] - msgpack {id, load, dnc = [entries] | contacts = [contact], done}
-- Returns msgpack the campaign's view when done, else true; or {err, msg}: exists (a create of
-- the same id replaced this one, or ended it).

local cp = campaign(ARG.id)
if not cp or cp.state ~= 'loading' then
  return cmsgpack.pack(refuse('campaign_exists', 'campaign ' .. ARG.id .. ' was created again'))
end
for _, entry in ipairs(ARG.dnc or {}) do call('SADD', key('cpdnc', ARG.id), entry) end
for _, c in ipairs(ARG.contacts or {}) do add_contact(ARG.id, c) end
if not ARG.done then
  keep_for(ARG.id, LOAD_TTL_MS)
  return cmsgpack.pack(true)
end
cp.state, cp.after, cp.load = cp.after, nil, nil
call('SET', key('cp', ARG.id), cmsgpack.pack(cp))
keep_for(ARG.id, nil)
call('SADD', KEYS[1], ARG.id)
return cmsgpack.pack(view(ARG.id))
