-- cp_dnc.lua: entries put on a campaign's do-not-call list; every contact they name that is
-- pending, retrying, queued, or in a call not dialled yet for its claim (its dial job still
-- waits: the dial step then finds it skipped and sends nothing) is skipped at once. The
-- contacts named are found through cpby (cp_lib.lua), so a step costs the contacts its
-- entries name, not the campaign's size; a campaign created before that index is read whole.
-- A contact taken out of the line is marked `pulled`, and returned by every later step that
-- names it: a list repeated after a failure part-way still has its task withdrawn.
-- ARGV[2] - msgpack {id, entries}
-- Returns msgpack [the contacts taken out of the line, now or before], or {err, msg}: unknown.

local cp = campaign(ARG.id)
if not cp then return cmsgpack.pack(unknown(ARG.id)) end
local entries = {}
for _, entry in ipairs(ARG.entries) do
  call('SADD', key('cpdnc', ARG.id), entry)
  entries[entry] = true
end
local candidates = {}
if cp.by == 2 then
  local seen = {}
  for entry in pairs(entries) do
    for _, cid in ipairs(named_by(ARG.id, entry)) do
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
local hits, out = {}, {}
for _, c in ipairs(candidates) do
  if named(c, entries) then
    if CLAIMABLE[c.status] or c.status == 'queued'
        or (c.status == 'in_call' and (c.dialled_n or 0) ~= c.n) then
      hits[#hits + 1] = c
    elseif c.pulled then
      out[#out + 1] = c
    end
  end
end
table.sort(hits, function(x, y) return x.id < y.id end)
for _, c in ipairs(hits) do
  if c.status == 'queued' then
    c.pulled = true
    out[#out + 1] = c
  end
  move(ARG.id, c, 'skipped')
  save(ARG.id, c)
end
table.sort(out, function(x, y) return x.id < y.id end)
return cmsgpack.pack(out)
