-- view.lua: a conversation with its customer and their last interactions; reads only.
-- KEYS[1] - the domain anchor
-- ARGV[1] - key prefix; ARGV[2] - msgpack {cv, hl = history limit}
-- Returns msgpack [conversation or false, customer or false, history tail (oldest first)].

local v = conversation(ARG.cv)
if not v then return cmsgpack.pack({false, false, {}}) end
local c = customer(v.cu)
if not c then return cmsgpack.pack({v, false, {}}) end
return cmsgpack.pack({v, c, history_tail(c.id, ARG.hl)})
