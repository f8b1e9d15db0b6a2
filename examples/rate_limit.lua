-- A per-source rate limiter: each IPv4 source may send RATE packets per second; the rest of
-- its packets that second are dropped. Sources are remembered in LRU maps, so a flood of new
-- addresses evicts the oldest instead of filling anything up.
-- RATE is a global: change it while the filter runs with `luabpf set rate_limit RATE=500`.
RATE = 100
local SECOND <const> = 1000000000

window = map.lru(65536)     -- source address → when its current one-second window began (ns)
count = map.lru(65536)      -- source address → packets seen in that window
dropped = map.lru(65536)    -- source address → packets dropped, for `luabpf run`'s view

function filter(hdr, pld)
  local ip = hdr.ip
  if ip == nil then return true end
  local src = ip.src
  local now = time.ns()
  local start = window[src]
  if start == nil or now - start >= SECOND then
    window[src] = now
    count[src] = 1
    return true
  end
  local n = (count[src] or 0) + 1
  count[src] = n
  if n > RATE then
    map.add(dropped, src, 1)
    return false
  end
  return true
end
