-- cp_claim.lua: due contacts of a running campaign become queued, one caller each.
-- ARGV[2] - msgpack {id, now, limit}
-- Returns msgpack [claimed contacts], or {err, msg}: unknown.

local cp = campaign(ARG.id)
if not cp then return cmsgpack.pack(unknown(ARG.id)) end
local out = {}
if cp.state ~= 'running' then return cmsgpack.pack(out) end
local room = math.min(ARG.limit, cp.max_queued - call('SCARD', key('cpline', ARG.id)))
while room > 0 do
  local head = call('ZRANGEBYSCORE', key('cpdue', ARG.id), '-inf', ARG.now, 'LIMIT', 0, 1)
  if #head == 0 then break end
  local c = contact(ARG.id, head[1])
  if blocked(ARG.id, c) then
    move(ARG.id, c, 'skipped')
  else
    move(ARG.id, c, 'queued')
    c.n = c.n + 1
    c.conversation = ''
    c.due_ms = ARG.now -- while queued: when it was claimed (recovery reads it)
    out[#out + 1] = c
    room = room - 1
  end
  save(ARG.id, c)
end
return cmsgpack.pack(out)
