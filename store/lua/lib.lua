-- lib.lua: the helpers every store script starts with (store/redis_base.py, store/base.py).
-- KEYS[1] - the domain anchor: the id counters, omniroute:{DOMAIN}:ids (hash: cu, cv, ix)
-- ARGV[1] - the key prefix, omniroute:{DOMAIN}:
-- ARGV[2] - the operation's arguments, msgpack map
-- Returns (via finish): msgpack of the result, or of {err = code, msg = text} when refused.
-- Records (cu:ID customers, cv:ID conversations) are msgpack maps read once per script, cached,
-- and written back by finish() only when changed. Refusals come before the first write.
-- Strings that mean "none" are '' (msgpack nil would drop the key).

PREFIX = ARGV[1] -- core.lua's key(), call() and refuse() come before this file
local ARG = cmsgpack.unpack(ARGV[2])

local function next_id(kind)
  return kind .. '-' .. call('HINCRBY', KEYS[1], kind, 1)
end

-- a msgpack record under a key, or nil
local function record(k)
  local raw = call('GET', k)
  if raw then return cmsgpack.unpack(raw) end
  return nil
end

local CU, CV, DIRTY = {}, {}, {}

local function customer(id)
  if CU[id] == nil then CU[id] = record(key('cu', id)) or false end
  return CU[id] or nil
end

local function conversation(id)
  if CV[id] == nil then CV[id] = record(key('cv', id)) or false end
  return CV[id] or nil
end

local function touch(kind, id)
  DIRTY[kind .. ':' .. id] = {kind, id}
end

local function new_customer(id, site)
  local c = {id = id, v = 1, grp = 'normal', site = site or '', prof = {}, ed = {}, ni = 0,
             no = 0, addr = {}, open = '', last = ''}
  CU[id] = c
  touch('cu', id)
  return c
end

-- link an address to customer c, moving it off whichever customer had it
local function link_address(c, address)
  local known = call('HGET', key('addr'), address)
  if known == c.id then return end
  if known then
    local old = customer(known)
    if old then
      local kept = {}
      for _, a in ipairs(old.addr) do
        if a ~= address then kept[#kept + 1] = a end
      end
      old.addr = kept
      touch('cu', old.id)
    end
  end
  call('HSET', key('addr'), address, c.id)
  c.addr[#c.addr + 1] = address
  touch('cu', c.id)
end

-- the customer's open conversation, or a new one that remembers the last agent
local function open_conversation(c, channel, at)
  if c.open ~= '' then
    local open = conversation(c.open)
    if open and open.st ~= 'closed' then return open end
  end
  local id = next_id('cv')
  local v = {id = id, cu = c.id, st = 'queued', ag = '', ch = {channel}, at = at, la = c.last,
             pd = false}
  CV[id] = v
  c.open = id
  touch('cv', id)
  touch('cu', c.id)
  return v
end

-- append an interaction to the customer's history; returns its 1-based position
local function append_history(c, ix)
  return call('RPUSH', key('h', c.id), cmsgpack.pack(ix))
end

-- move conversation v to state st (agent ag, '' for none); false when v is closed already.
-- Closing frees the customer for a new conversation and remembers the agent (this one, else
-- the conversation's, else the previous) as the customer's last agent.
local function set_conversation_state(v, st, ag)
  if v.st == 'closed' then return st == 'closed' end
  local agent = ag
  if st == 'closed' then
    local c = customer(v.cu)
    if c.open == v.id then c.open = '' end
    if agent == '' then agent = v.ag end
    if agent ~= '' then c.last = agent end
    touch('cu', c.id)
  end
  v.st = st
  v.ag = agent
  touch('cv', v.id)
  return true
end

-- the customer's last `limit` interactions, oldest first (msgpack records)
local function history_tail(cu, limit)
  if not limit or limit <= 0 then return {} end
  local out = {}
  for i, raw in ipairs(call('LRANGE', key('h', cu), -limit, -1)) do out[i] = cmsgpack.unpack(raw) end
  return out
end

-- tell every node that customer c's client group changed (their send-time filter caches)
local function publish_group(c)
  call('PUBLISH', key('groups'), cmsgpack.pack({c.id, c.v, c.grp}))
end

-- write back every changed record, then pack the result
local function finish(result)
  for _, kid in pairs(DIRTY) do
    local kind, id = kid[1], kid[2]
    local rec
    if kind == 'cu' then rec = CU[id] else rec = CV[id] end
    call('SET', key(kind, id), cmsgpack.pack(rec))
  end
  return cmsgpack.pack(result)
end
