-- The paper's Figure 1: an ondemand-like policy that backs off when the CPU is too hot.
-- get_load is the user-defined function the paper mentions; here it asks the kernel's
-- own measurement (cpufreq.load). up, down and overheated are globals: change them
-- while the policy runs with `luabpf set overheat overheated=90`.
-- Run it: luabpf run examples/overheat.lua --cpufreq [--sysfs-root DIR] [--interval 20]
up = 80
down = 30
overheated = 100

function get_load(cpu)
  return cpufreq.load(cpu)
end

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
