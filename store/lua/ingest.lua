-- ingest.lua: one batch of adapter events: dedupe, thread, identify, conversation, log.
-- KEYS[1] - the domain anchor (id counters)
-- ARGV[1] - key prefix; ARGV[2] - msgpack {dd = dedupe_s, ts = thread_s, at = now (RFC 3339),
--           ev = [{id, ch, from, cid, site, mid, refs = [Message-IDs, best first], raw}]}
--           raw is the whole event (msgpack), stored in the log as it came.
-- Returns msgpack [[conversation, customer, duplicate (0|1)] per event]. Never refuses: the
-- caller validated the batch, so the batch is stored whole.

local function identify(e)
  local known = false
  if e.from ~= '' then known = call('HGET', key('addr'), e.from) end
  if e.cid then
    local c = customer(e.cid) or new_customer(e.cid, e.site)
    if e.from ~= '' and known ~= c.id then link_address(c, e.from) end
    return c
  end
  if known then return customer(known) end
  local id = next_id('cu')
  while customer(id) do id = next_id('cu') end
  local c = new_customer(id, e.site)
  c.addr = {e.from}
  call('HSET', key('addr'), e.from, id)
  return c
end

local out = {}
for i, e in ipairs(ARG.ev) do
  local seen = record(key('ev', e.id))
  if not seen and e.mid then seen = record(key('mid', e.mid)) end
  if seen then
    out[i] = {seen.cv, seen.cu, 1}
  else
    local c, v = nil, nil
    for _, ref in ipairs(e.refs) do
      local origin = record(key('mid', ref))
      if origin then
        if not e.cid or e.cid == origin.cu then
          c = customer(origin.cu)
          local thread = conversation(origin.cv)
          if thread and thread.st ~= 'closed' then v = thread end
        end
        break
      end
    end
    if c == nil or e.cid then c = identify(e) end
    if v == nil then v = open_conversation(c, e.ch, ARG.at) end
    call('SET', key('ev', e.id), cmsgpack.pack({cv = v.id, cu = c.id}), 'EX', ARG.dd)
    if e.mid then
      call('SET', key('mid', e.mid), cmsgpack.pack({cv = v.id, cu = c.id}), 'EX', ARG.ts)
    end
    call('XADD', key('log'), '*', 'e', e.raw, 'cv', v.id, 'cu', c.id)
    out[i] = {v.id, c.id, 0}
  end
end
return finish(out)
