-- state.lua: move a conversation along queued → offered → assigned → wrapup → closed.
-- KEYS[1] - the domain anchor
-- ARGV[1] - key prefix; ARGV[2] - msgpack {cv, st, ag ('' for none)}
-- A closed conversation is never reopened (see set_conversation_state in lib.lua).
-- Returns msgpack true, or {err, msg}: conversation unknown / closed.

local v = conversation(ARG.cv)
if not v then return finish(refuse('conversation', ARG.cv)) end
if not set_conversation_state(v, ARG.st, ARG.ag) then
  return finish(refuse('closed', 'conversation ' .. v.id .. ' is closed'))
end
return finish(true)
