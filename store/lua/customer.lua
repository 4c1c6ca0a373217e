-- customer.lua: an agent's versioned edit, or a client-group change.
-- KEYS[1] - the domain anchor
-- ARGV[1] - key prefix; ARGV[2] - msgpack {cu, v (version the edit is based on; -1 for a
--           group change), f = {EDITABLE_FIELDS → text}, grp ('' unless a group change)}
-- A change bumps the version; an edit based on another version changes nothing. A group
-- change is PUBLISHed on `groups` as msgpack [customer, version, group].
-- Returns msgpack {ok = customer} or {stale = current customer}, or {err, msg}: unknown.

local c = customer(ARG.cu)
if not c then return finish(refuse('customer', ARG.cu)) end
if ARG.v >= 0 and ARG.v ~= c.v then return finish({stale = c}) end
local changed, regrouped = false, false
if ARG.grp ~= '' and ARG.grp ~= c.grp then
  c.grp = ARG.grp
  changed, regrouped = true, true
end
for name, value in pairs(ARG.f) do
  if c.ed[name] ~= value then
    c.ed[name] = value
    changed = true
  end
end
if changed then
  c.v = c.v + 1
  touch('cu', c.id)
end
if regrouped then publish_group(c) end
return finish({ok = c})
