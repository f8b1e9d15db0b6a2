-- The paper's Figure 2: drop the SSH identification string of a vulnerable server.
-- Attach it where the server's packets leave (tc egress) or arrive (XDP on the client).
-- Note Lua's reading of the set [^ -%G]: " -%" is the range 0x20..0x25 and "G" a letter,
-- so a version followed by "\r\n" captures the "\r\n" too (Lua 5.4 does the same).
function filter(hdr, pld)
  -- get a segment of the payload
  local seg = pld:segment(0, 255)
  -- convert segment data to string
  local str = tostring(seg)
  -- pattern to capture the software version
  local pattern = 'SSH%-[^ -%G]+%-([^ -%G]+)'
  -- get the software version
  local software_version = str:match(pattern)
  if software_version == 'OpenSSH_6.4' then
    -- reject the packet
    return false
  end
  -- accept the packet
  return true
end
