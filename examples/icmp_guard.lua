-- Drop oversized ICMP echo requests (IPv4 and IPv6) and any ICMP with a TTL below MIN_TTL.
-- MAX_PING and MIN_TTL are globals: a running filter's values can be changed live.
MAX_PING = 64
MIN_TTL = 2

function filter(hdr, pld)
  local icmp = hdr.icmp
  if icmp == nil then return true end
  if (icmp.type == 8 or icmp.type == 128) and #pld > MAX_PING then return false end
  if hdr.ip and hdr.ip.ttl < MIN_TTL then return false end
  return true
end
