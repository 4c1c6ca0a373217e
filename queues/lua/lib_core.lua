-- lib_core.lua: the call every routing operation starts with: its state, the records and the
-- entry point (docs/routing.md, step by step). The engine loads the helpers' files in order
-- (queues/redis.py, LIB: core.lua, the key builder both engines share, then this one), then
-- every operation, as one Redis function library: the helpers' top level runs once per load,
-- and each call starts with begin(KEYS, ARGV). The files are one chunk: a local of one file is seen by the files after it.
-- KEYS[1] - the domain anchor: its reservation counter, omniroute:{DOMAIN}:seq
-- ARGV[1] - the key prefix, omniroute:{DOMAIN}:
-- ARGV[2] - now, in ms since the epoch (time is passed in; never TIME)
-- ARGV[3] - the policy, msgpack of Policy.to_wire()
-- ARGV[4] - the operation's arguments, msgpack map
-- Returns (via run): msgpack of the effect rows, or of {err = code, msg = text} when refused.
-- Records (agent:ID, task:ID) are msgpack blobs read once per call, cached, and written back
-- at the end only when they changed; indexes (zsets, sets, hashes) are written as we go.
-- Refusals are decided before the first write, so a refused call changes nothing.

-- the state of one call, set by begin(); the policy's decoded tables are kept between calls
-- (keyed by the policy's bytes: decoding them is a good part of a small call's cost)
local ANCHOR, NOW, POL, ARG, CH, TIERS, FX -- PREFIX is core.lua's
local ALLOWED, BLOCKS, HARD
local AG, TK, RAW_A, RAW_T, LOGGED
local POLICIES, POLICY_COUNT = {}, 0

local function decode_policy(raw)
  local pol = cmsgpack.unpack(raw)
  local allowed_by = {}
  for g, tiers in pairs(pol.elig) do
    allowed_by[g] = {}
    for _, t in ipairs(tiers) do allowed_by[g][t] = true end
  end
  local blocks = {}
  for _, c in ipairs(pol.blocks) do blocks[c] = true end
  local hard = {}
  for _, name in ipairs(pol.sk_hard or {}) do hard[name] = true end
  return {pol, allowed_by, blocks, hard}
end

local function begin(keys, argv)
  ANCHOR = keys[1]
  PREFIX = argv[1]
  NOW = tonumber(argv[2])
  local known = POLICIES[argv[3]]
  if known == nil then
    known = decode_policy(argv[3])
    if POLICY_COUNT >= 8 then POLICIES, POLICY_COUNT = {}, 0 end -- a few policies at a time
    POLICIES[argv[3]] = known
    POLICY_COUNT = POLICY_COUNT + 1
  end
  POL, ALLOWED, BLOCKS, HARD = known[1], known[2], known[3], known[4]
  CH, TIERS = POL.channels, POL.tiers
  ARG = cmsgpack.unpack(argv[4])
  FX, AG, TK, RAW_A, RAW_T, LOGGED = {}, {}, {}, {}, {}, {}
end

local function emit(row)
  FX[#FX + 1] = row
end

-- byte-wise string order (Lua's `<` follows the server locale; zsets and Python use bytes)
local function sless(a, b)
  if a == b then return false end
  local n = math.min(#a, #b)
  local i = 1
  while i <= n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
    i = i + 1
  end
  return #a < #b
end

local function sorted(list)
  table.sort(list, sless)
  return list
end

-- policy ------------------------------------------------------------------------------------

local function allowed(g, t)
  return ALLOWED[g] ~= nil and ALLOWED[g][t] == true
end

local function levels(g)
  return POL.lvl[g] or {}
end

-- records -----------------------------------------------------------------------------------

-- a record (kind 'agent' or 'task') read once per script: cached in `cache`, its raw bytes in
-- `raws` so that flush() writes back only what changed; false caches "no such record"
local function load(cache, raws, kind, id)
  local rec = cache[id]
  if rec == nil then
    local raw = call('GET', key(kind, id))
    if raw then
      rec = cmsgpack.unpack(raw)
      raws[id] = raw
    else
      rec = false
    end
    cache[id] = rec
  end
  return rec or nil
end

local function agent(id) return load(AG, RAW_A, 'agent', id) end
local function task(id) return load(TK, RAW_T, 'task', id) end

local function flush()
  for id, a in pairs(AG) do
    if a then
      local raw = cmsgpack.pack(a)
      if raw ~= RAW_A[id] then call('SET', key('agent', id), raw) end
    end
  end
  for id, t in pairs(TK) do
    if t then
      local raw = cmsgpack.pack(t)
      if raw ~= RAW_T[id] then call('SET', key('task', id), raw) end
    elseif RAW_T[id] then
      call('DEL', key('task', id))
    end
  end
end

-- the shared entry point: run the operation, then either refuse or write back and report
local function main(op)
  local err = op()
  if err then return cmsgpack.pack(err) end
  flush()
  return cmsgpack.pack(FX)
end
