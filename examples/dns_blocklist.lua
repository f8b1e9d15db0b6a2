-- Drop DNS queries for example.com, with the DNS header written as a layout
-- (Luadata's form: name = {bit_offset, bit_width}).
local DNS = data.layout{
  id = {0, 16}, qr = {16, 1}, opcode = {17, 4}, rd = {23, 1},
  qdcount = {32, 16}, ancount = {48, 16},
}

-- the question's name as DNS writes it: length-prefixed labels, then a zero
local BLOCKED = '\7example\3com\0'

function filter(hdr, pld)
  if hdr.udp == nil or hdr.udp.dport ~= 53 then return true end
  local dns = pld:layout(DNS)
  if dns.qr == 0 and dns.opcode == 0 and dns.qdcount == 1 then
    local qname = pld:sub(13, 12 + #BLOCKED)
    if qname == BLOCKED then return false end
  end
  return true
end
