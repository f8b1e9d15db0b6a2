-- The headers of a packet filter's `hdr` table, as Luadata layouts:
--   name = {bit_offset, bit_width [, "string"]}
-- Offsets count bits from the start of the header; fields are big-endian on the
-- wire and read in host order; a "string" field is a view of its bytes.
-- hdr.vlan2 (the inner VLAN tag) has vlan's layout.
-- Field names follow scapy's, so users (and our tests) can compare them one to one.

eth = data.layout{ dst = {0, 48}, src = {48, 48}, type = {96, 16} }

vlan = data.layout{ prio = {0, 3}, dei = {3, 1}, vlan = {4, 12}, type = {16, 16} }

ip = data.layout{
  version = {0, 4}, ihl = {4, 4}, tos = {8, 8}, len = {16, 16}, id = {32, 16},
  flags = {48, 3}, frag = {51, 13}, ttl = {64, 8}, proto = {72, 8}, chksum = {80, 16},
  src = {96, 32}, dst = {128, 32},
}

-- ip6.nh is the first next header; hdr.ip6.proto (the protocol after the extension
-- headers) is no bytes of the header: the parser computes it (compiler/hooks/headers.py).
ip6 = data.layout{
  version = {0, 4}, tc = {4, 8}, fl = {12, 20}, plen = {32, 16}, nh = {48, 8}, hlim = {56, 8},
  src = {64, 128, "string"}, dst = {192, 128, "string"},
}

-- The IPv6 Fragment header (scapy's IPv6ExtHdrFragment): offset in 8-octet units,
-- m = more fragments.
frag6 = data.layout{
  nh = {0, 8}, res1 = {8, 8}, offset = {16, 13}, res2 = {29, 2}, m = {31, 1}, id = {32, 32},
}

tcp = data.layout{
  sport = {0, 16}, dport = {16, 16}, seq = {32, 32}, ack = {64, 32}, dataofs = {96, 4},
  reserved = {100, 3}, flags = {103, 9}, window = {112, 16}, chksum = {128, 16}, urgptr = {144, 16},
}

udp = data.layout{ sport = {0, 16}, dport = {16, 16}, len = {32, 16}, chksum = {48, 16} }

icmp = data.layout{ type = {0, 8}, code = {8, 8}, chksum = {16, 16}, id = {32, 16}, seq = {48, 16} }
