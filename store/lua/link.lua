-- link.lua: a site vouches for a customer's addresses; each moves off any other customer.
-- KEYS[1] - the domain anchor (id counters)
-- ARGV[1] - key prefix; ARGV[2] - msgpack {cu, addr = [address, ...]}
-- Returns msgpack true, or {err, msg}: customer unknown.

local c = customer(ARG.cu)
if not c then return finish(refuse('customer', ARG.cu)) end
for _, address in ipairs(ARG.addr) do link_address(c, address) end
return finish(true)
