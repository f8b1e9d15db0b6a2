-- Drop UDP datagrams whose payload is longer than MAX_LEN bytes, and say so once per change.
-- MAX_LEN is a global: while traffic flows, `luabpf set udp_threshold MAX_LEN=100` tightens it
-- and the very next datagrams follow the new value.
MAX_LEN = 1000
last_seen = map.array(1)    -- the MAX_LEN the filter last reported

function filter(hdr, pld)
  if hdr.udp == nil then return true end
  if last_seen[0] ~= MAX_LEN then
    last_seen[0] = MAX_LEN
    print("udp_threshold: now dropping UDP payloads over", MAX_LEN, "bytes")
  end
  return #pld <= MAX_LEN
end
