-- core.lua: the Lua both engines open with (queues/runtime.py puts it first in the routing
-- engine's function library, queues/redis.py LIB, and before every store script,
-- store/redis_base.py): the key prefix, the one key builder, a command, a refusal.
-- Each engine sets PREFIX from its ARGV[1] (the routing engine per call in begin(), a store
-- script at its top level) before it builds a key.

local PREFIX

-- the one key builder: omniroute:{DOMAIN}:part1:part2... (ids always last)
local function key(...)
  return PREFIX .. table.concat({...}, ':')
end

local function call(...)
  return redis.call(...)
end

local function refuse(code, msg)
  return {err = code, msg = msg}
end
