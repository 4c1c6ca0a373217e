-- state.lua: move a conversation along queued → offered → assigned → wrapup → closed.
-- KEYS[1] - the domain anchor
-- ARGV[1] - key prefix; ARGV[2] - msgpack {cv, st, ag ('' for none)}
-- Closing frees the customer for a new conversation and remembers the agent (this one, else
-- the conversation's, else the previous) as the customer's last agent. A closed conversation
-- is never reopened. Returns msgpack true, or {err, msg}: conversation unknown / closed.

local v = conversation(ARG.cv)
if not v then return finish(refuse('conversation', ARG.cv)) end
if v.st == 'closed' then
  if ARG.st == 'closed' then return finish(true) end
  return finish(refuse('closed', 'conversation ' .. v.id .. ' is closed'))
end
local agent = ARG.ag
if ARG.st == 'closed' then
  local c = customer(v.cu)
  if c.open == v.id then c.open = '' end
  if agent == '' then agent = v.ag end
  if agent ~= '' then c.last = agent end
  touch('cu', c.id)
end
v.st = ARG.st
v.ag = agent
touch('cv', v.id)
return finish(true)
