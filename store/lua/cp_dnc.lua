-- cp_dnc.lua: entries put on a campaign's do-not-call list; every contact they name that is
-- pending, retrying, queued, or in a call not dialled yet for its claim (its dial job still
-- waits: the dial step then finds it skipped and sends nothing) is skipped at once. The
-- contacts named are found through cpby (cp_lib.lua), so a step costs its entries, not the
-- campaign's size; a campaign created before that index is read whole.
-- ARGV[2] - msgpack {id, entries}
-- Returns msgpack [the contacts that were queued], or {err, msg}: unknown.

local cp = campaign(ARG.id)
if not cp then return cmsgpack.pack(unknown(ARG.id)) end
local named = {}
for _, entry in ipairs(ARG.entries) do
  call('SADD', key('cpdnc', ARG.id), entry)
  named[entry] = true
end
local candidates = {}
if cp.by then
  local seen = {}
  for entry in pairs(named) do
    local ids = call('HGET', key('cpby', ARG.id), entry)
    for cid in string.gmatch(ids or '', '%S+') do
      if not seen[cid] then
        seen[cid] = true
        candidates[#candidates + 1] = contact(ARG.id, cid)
      end
    end
  end
else
  local flat = call('HGETALL', key('cpc', ARG.id))
  for i = 2, #flat, 2 do candidates[#candidates + 1] = cmsgpack.unpack(flat[i]) end
end
local hits = {}
for _, c in ipairs(candidates) do
  local open = CLAIMABLE[c.status] or c.status == 'queued'
      or (c.status == 'in_call' and (c.dialled_n or 0) ~= c.n)
  if open and (named[c.phone] or (c.customer_id ~= '' and named['cu:' .. c.customer_id])) then
    hits[#hits + 1] = c
  end
end
table.sort(hits, function(x, y) return x.id < y.id end)
local out = {}
for _, c in ipairs(hits) do
  if c.status == 'queued' then out[#out + 1] = c end
  move(ARG.id, c, 'skipped')
  save(ARG.id, c)
end
return cmsgpack.pack(out)
