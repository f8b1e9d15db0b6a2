-- Count packets by IP protocol (IPv4 protocol or IPv6 next header: 6 TCP, 17 UDP, 1 ICMP,
-- 58 ICMPv6 …) and everything that is not IP under key 256. Per-CPU counters: each CPU adds
-- to its own, `luabpf run` and the Python API show the sums. Passes every packet.
packets = map.percpu_array(257)

function filter(hdr, pld)
  if hdr.ip then
    map.add(packets, hdr.ip.proto, 1)
  elseif hdr.ip6 then
    map.add(packets, hdr.ip6.nh, 1)
  else
    map.add(packets, 256, 1)
  end
  return true
end
