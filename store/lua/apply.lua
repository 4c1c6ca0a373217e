-- apply.lua: one log entry into history, profile, counters and conversation, once per event.
-- KEYS[1] - the domain anchor (id counters)
-- ARGV[1] - key prefix; ARGV[2] - msgpack {dd = dedupe_s, now = RFC 3339, cv, cu,
--           e = {id, ch, type, at, body, subj, meta, prof (PROFILE_FIELDS but the group), grp, site}}
--           hl = history to return (0: none)
-- Returns msgpack [conversation, customer, interaction, history tail] — for an event applied
-- before, the interaction appended then — or {err, msg}: customer / conversation unknown.

local E = ARG.e
local c = customer(ARG.cu)
if not c then return finish(refuse('customer', ARG.cu)) end
local evk = key('ev', E.id)
local seen = record(evk)
if seen and seen.ix then
  local raw = call('LINDEX', key('h', c.id), seen.pos - 1)
  return finish({conversation(seen.cv), c, cmsgpack.unpack(raw), history_tail(c.id, ARG.hl)})
end
local v = conversation(ARG.cv)
if not v then return finish(refuse('conversation', ARG.cv)) end
if v.st == 'closed' then v = open_conversation(c, E.ch, ARG.now) end

local ix = {id = next_id('ix'), cv = v.id, ch = E.ch, dir = 'in', at = E.at, body = E.body,
            subj = E.subj, type = E.type, meta = E.meta}
local pos = append_history(c, ix)
for name, value in pairs(E.prof) do c.prof[name] = value end
if E.grp and E.grp ~= c.grp then
  c.grp = E.grp
  c.v = c.v + 1
  publish_group(c)
end
if c.site == '' and E.site then c.site = E.site end
if E.type == 'message' then c.ni = c.ni + 1 end
local chans = {}
for _, ch in ipairs(v.ch) do
  if ch ~= E.ch then chans[#chans + 1] = ch end
end
chans[#chans + 1] = E.ch -- the last one is the conversation's last channel
v.ch = chans
touch('cu', c.id)
touch('cv', v.id)

local mark = cmsgpack.pack({cv = v.id, cu = c.id, ix = ix.id, pos = pos})
if seen then
  call('SET', evk, mark, 'KEEPTTL')
else
  call('SET', evk, mark, 'EX', ARG.dd)
end
return finish({v, c, ix, history_tail(c.id, ARG.hl)})
