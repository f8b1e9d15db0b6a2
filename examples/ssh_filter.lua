-- The paper's Figure 2: drop the SSH identification string of a vulnerable server.
-- Attach it where the server's packets leave (tc egress) or arrive (XDP on the client).
-- The PDF's text shows the set as "[^ -% G ]": its extraction puts spaces between all
-- tokens ("% -" is "%-"). The set is [^-%G], "printable characters with the exception
-- of hyphen and whitespace" as the paper says; read as [^ -%G], Lua would take " -%"
-- for the range 0x20..0x25 and capture a banner's "\r\n" with the version.
function filter(hdr, pld)
  -- get a segment of the payload
  local seg = pld:segment(0, 255)
  -- convert segment data to string
  local str = tostring(seg)
  -- pattern to capture the software version
  local pattern = 'SSH%-[^-%G]+%-([^-%G]+)'
  -- get the software version
  local software_version = str:match(pattern)
  if software_version == 'OpenSSH_6.4' then
    -- reject the packet
    return false
  end
  -- accept the packet
  return true
end
