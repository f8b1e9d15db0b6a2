"""The paper's two scripts, as tests use them: Figure 1 (a CPU-frequency
policy) and Figure 2 (the SSH filter), with the PDF extraction's inserted spaces taken
out (tests/unit/test_parser.py checks that against the paper's text when it is there).
Figure 1 calls `get_load`, which the paper leaves to the user: GET_LOAD defines it."""

FIGURE1 = """\
up = 80
down = 30
overheated = 100
function throttle(cpu, cur, max, min)
  -- get utilization since last check
  local load = get_load(cpu)
  -- get temperature
  local temp = acpi.get_temp(cpu)
  if temp >= overheated then
    -- decrease frequency by 20%
    cpufreq.target(cpu, cur * 80 / 100, '<=')
  else
    if load > up then
      -- rise frequency to the maximum value
      cpufreq.target(cpu, max, '>=')
    elseif load < down then
      -- decrease frequency by 20%
      cpufreq.target(cpu, cur * 80 / 100, '<=')
    end
  end
end
"""

FIGURE2 = """\
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
"""

GET_LOAD = """\
local function get_load(cpu)
  return cpufreq.load(cpu)
end
"""
