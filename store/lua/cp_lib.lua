-- cp_lib.lua: the helpers of the campaign scripts (store/campaigns_redis.py, the contract in
-- store/campaigns.py). Follows queues/lua/core.lua (key, call, refuse).
-- KEYS[1] - the domain's campaign list, omniroute:{DOMAIN}:cps (a set of ids; routes the call)
-- ARGV[1] - the key prefix, omniroute:{DOMAIN}:
-- ARGV[2] - the operation's arguments, msgpack map
-- Keys of campaign ID: cp:ID (the record, msgpack), cpc:ID (hash contact id -> msgpack),
-- cpn:ID (hash of counters), cpdue:ID (zset of claimable contacts by due ms), cpline:ID (set
-- of contacts queued or in a call), cpdnc:ID (set: phones and cu:<customer id>), cpby:ID (sorted
-- set, all scores 0, of `entry \n contact id`: the contacts a phone or cu:<customer id> names are
-- one ZRANGEBYLEX however many share it; kept for campaigns whose record says `by = 2`, which
-- every campaign created since has).
-- A create too large for one script (cp_load.lua) keeps its campaign in state `loading`, seen
-- only by the steps that carry its `load` token, until the last step; until then its keys
-- expire LOAD_TTL_MS after the last step, so a load nobody finishes leaves nothing behind.
-- Refusals come before the first write.

PREFIX = ARGV[1]
local ARG = cmsgpack.unpack(ARGV[2])
local CLAIMABLE = {pending = true, retrying = true}
local IN_LINE = {queued = true, in_call = true}

local CAMPAIGN_KEYS = {'cp', 'cpc', 'cpn', 'cpdue', 'cpline', 'cpdnc', 'cpby'}
local LOAD_TTL_MS = 3600000

-- a loading campaign's keys expire unless another step comes (`ttl` nil: they stay)
local function keep_for(id, ttl)
  for _, name in ipairs(CAMPAIGN_KEYS) do
    if ttl then call('PEXPIRE', key(name, id), ttl) else call('PERSIST', key(name, id)) end
  end
end

-- the campaign's record; nil while it is loading, except to the steps of that load
local function campaign(id)
  local raw = call('GET', key('cp', id))
  if not raw then return nil end
  local cp = cmsgpack.unpack(raw)
  if cp.state == 'loading' and not (ARG.load and cp.load == ARG.load) then return nil end
  return cp
end

local function unknown(id)
  return refuse('unknown_campaign', 'campaign ' .. id .. ' is not known')
end

local function contact(cid, id)
  local raw = call('HGET', key('cpc', cid), id)
  if raw then return cmsgpack.unpack(raw) end
  return nil
end

local function save(cid, c)
  call('HSET', key('cpc', cid), c.id, cmsgpack.pack(c))
end

local function count(cid, field, by)
  if call('HINCRBY', key('cpn', cid), field, by) <= 0 then call('HDEL', key('cpn', cid), field) end
end

-- the one place a contact's status changes: counters, due set and line with it
local function move(cid, c, status)
  if c.status ~= '' then count(cid, c.status, -1) end
  call('ZREM', key('cpdue', cid), c.id)
  call('SREM', key('cpline', cid), c.id)
  c.status = status
  count(cid, status, 1)
  if CLAIMABLE[status] then
    call('ZADD', key('cpdue', cid), c.due_ms, c.id)
  elseif IN_LINE[status] then
    call('SADD', key('cpline', cid), c.id)
  end
end

-- what a do-not-call entry may name a contact by (store.campaigns.dnc_keys)
local function dnc_keys(c)
  local out = {}
  if c.phone ~= '' then out[#out + 1] = c.phone end
  if c.customer_id ~= '' then out[#out + 1] = 'cu:' .. c.customer_id end
  return out
end

-- the contact is named by one of `entries` (a table: entry -> true)
local function named(c, entries)
  for _, entry in ipairs(dnc_keys(c)) do
    if entries[entry] then return true end
  end
  return false
end

local function blocked(cid, c)
  for _, entry in ipairs(dnc_keys(c)) do
    if call('SISMEMBER', key('cpdnc', cid), entry) == 1 then return true end
  end
  return false
end

-- add a contact built by store.campaigns.new_contact (status pending); false if its id is taken
local function add_contact(cid, c)
  if call('HEXISTS', key('cpc', cid), c.id) == 1 then return false end
  local status = c.status
  if blocked(cid, c) then status = 'skipped' end
  c.status = ''
  move(cid, c, status)
  save(cid, c)
  for _, entry in ipairs(dnc_keys(c)) do call('ZADD', key('cpby', cid), 0, entry .. '\n' .. c.id) end
  return true
end

-- the ids of the contacts a do-not-call entry names (cpby; entries hold no control characters)
local function named_by(cid, entry)
  local out = {}
  local found = call('ZRANGEBYLEX', key('cpby', cid), '[' .. entry .. '\n', '(' .. entry .. '\11')
  for _, member in ipairs(found) do out[#out + 1] = string.sub(member, #entry + 2) end
  return out
end

local function view(id)
  local cp = campaign(id)
  if not cp then return nil end
  local counts = {}
  local flat = call('HGETALL', key('cpn', id))
  for i = 1, #flat, 2 do counts[flat[i]] = tonumber(flat[i + 1]) end
  cp.counts = counts
  cp.do_not_call = call('SCARD', key('cpdnc', id))
  cp.by = nil -- the store's own marks, not the campaign's
  return cp
end
