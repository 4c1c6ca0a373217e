-- annotate.lua: merge keys into the meta of one of the customer's last interactions.
-- KEYS[1] - the domain anchor (id counters)
-- ARGV[1] - key prefix; ARGV[2] - msgpack {cu, ix, meta = {...}, win = window, ts = thread s}
-- Returns msgpack true when found (and updated), false otherwise. A `message_id` in meta
-- (a mail we sent) becomes a known message, so the customer's reply threads back to it.

local h = key('h', ARG.cu)
local rows = call('LRANGE', h, -ARG.win, -1)
local len = call('LLEN', h)
for i = #rows, 1, -1 do
  local ix = cmsgpack.unpack(rows[i])
  if ix.id == ARG.ix then
    if type(ix.meta) ~= 'table' then ix.meta = {} end
    for k, v in pairs(ARG.meta) do ix.meta[k] = v end
    call('LSET', h, len - #rows + i - 1, cmsgpack.pack(ix))
    if type(ARG.meta.message_id) == 'string' and ARG.meta.message_id ~= '' then
      call('SET', key('mid', ARG.meta.message_id), cmsgpack.pack({cv = ix.cv, cu = ARG.cu}),
           'EX', ARG.ts)
    end
    return finish(true)
  end
end
return finish(false)
