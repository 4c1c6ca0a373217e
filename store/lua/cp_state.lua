-- cp_state.lua: running, paused or stopped (final). ARGV[2] - msgpack {id, state}
-- Returns msgpack the campaign's view, or {err, msg}: unknown, stopped.

local cp = campaign(ARG.id)
if not cp then return cmsgpack.pack(unknown(ARG.id)) end
if cp.state == 'stopped' and ARG.state ~= 'stopped' then
  return cmsgpack.pack(refuse('campaign_stopped', 'campaign ' .. ARG.id .. ' is stopped'))
end
cp.state = ARG.state
call('SET', key('cp', ARG.id), cmsgpack.pack(cp))
return cmsgpack.pack(view(ARG.id))
