-- Count, per CPU, how often the scheduler switches to the idle task and away from it,
-- from the sched:sched_switch tracepoint (its fields come from tracefs). Runs with
-- `luabpf run examples/idle_count.lua`, which attaches every tracepoint function.
to_idle = map.percpu_array(1)
from_idle = map.percpu_array(1)
switches = map.hash(4096)          -- next pid → how often it was switched to

function tracepoint.sched.sched_switch(args)
  if args.next_pid == 0 then map.add(to_idle, 0, 1) end
  if args.prev_pid == 0 then map.add(from_idle, 0, 1) end
  map.add(switches, args.next_pid, 1)
end
