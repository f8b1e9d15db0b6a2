-- Drop TCP and UDP traffic to ports on a blocklist (telnet, NetBIOS, SMB, RDP).
local function blocked(port)
  return port == 23 or port == 135 or port == 139 or port == 445 or port == 3389
end

function filter(hdr, pld)
  if hdr.tcp and blocked(hdr.tcp.dport) then return false end
  if hdr.udp and blocked(hdr.udp.dport) then return false end
  return true
end
