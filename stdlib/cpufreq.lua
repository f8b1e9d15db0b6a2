-- The kernel half of the CPU-frequency hook (DESIGN §3), in kernel Lua.
-- luabpf compiles it together with a policy script, which defines
-- throttle(cpu, cur, max, min), into two programs that share these maps:
--   luabpf_throttle, run on every CPU by a per-CPU timer each interval, and
--   the sched_switch tracepoint below, which measures each CPU's idle time.
-- User space fills cur, min, max and temp each interval and applies the requests
-- that cpufreq.target leaves (runtime/cpufreq_run.py).
luabpf_cur = map.array(1024)        -- kHz, per CPU: what scaling_cur_freq says
luabpf_min = map.array(1024)        -- kHz: cpuinfo_min_freq
luabpf_max = map.array(1024)        -- kHz: cpuinfo_max_freq
luabpf_temp = map.array(1024)       -- degrees Celsius: the CPU's thermal zone
luabpf_target = map.array(1024)     -- kHz, the latest cpufreq.target request
luabpf_relation = map.array(1024)   -- its relation: 1 is '<=', 2 is '>='
luabpf_requests = map.array(1024)   -- how many requests so far: user space applies new ones
luabpf_idle = map.array(1024)       -- ns the CPU was idle since throttle last ran on it
luabpf_since = map.array(1024)      -- when the CPU went idle; 0 while it runs a task
luabpf_last = map.array(1024)       -- when throttle last ran on the CPU
luabpf_load = map.array(1024)       -- percent of the last interval the CPU was busy

-- Runs on the CPU that switches tasks; pid 0 is that CPU's idle task.
function tracepoint.sched.sched_switch(args)
  local cpu = bpf.cpu()
  local now = time.ns()
  if args.prev_pid == 0 then
    local since = luabpf_since[cpu] or 0
    if since ~= 0 then map.add(luabpf_idle, cpu, now - since) end
    luabpf_since[cpu] = 0
  end
  if args.next_pid == 0 then luabpf_since[cpu] = now end
end

-- The program the timer runs: the load of this CPU since the last call, then the policy.
function luabpf_throttle()
  local cpu = bpf.cpu()
  local now = time.ns()
  local idle = luabpf_idle[cpu] or 0
  local since = luabpf_since[cpu] or 0
  if since ~= 0 then                  -- idle until the timer woke it: count that too
    idle = idle + (now - since)
    luabpf_since[cpu] = now
  end
  luabpf_idle[cpu] = 0
  local last = luabpf_last[cpu] or 0
  luabpf_last[cpu] = now
  if last ~= 0 and now > last then
    local busy = (now - last) - idle
    if busy < 0 then busy = 0 end
    luabpf_load[cpu] = busy * 100 // (now - last)
  end
  throttle(cpu, luabpf_cur[cpu] or 0, luabpf_max[cpu] or 0, luabpf_min[cpu] or 0)
end
