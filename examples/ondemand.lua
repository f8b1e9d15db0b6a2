-- An ondemand-like policy, the paper's Ondemand.lua in a few lines: a CPU busier than
-- UP percent goes to its maximum frequency at once; one busy less than DOWN percent
-- steps down by a fifth of its frequency each interval, to its minimum.
-- UP and DOWN are globals (`luabpf set ondemand UP=90`).
UP = 80
DOWN = 30

function throttle(cpu, cur, max, min)
  local load = cpufreq.load(cpu)
  if load > UP then
    if cur < max then cpufreq.target(cpu, max, '>=') end
  elseif load < DOWN and cur > min then
    cpufreq.target(cpu, cur * 80 / 100, '<=')
  end
end
