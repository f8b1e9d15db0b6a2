-- The kernel half of a CPU-frequency policy (docs/language.md), a program of its own:
-- every switch to or from a CPU's idle task (pid 0) is timed, so that each call of
-- throttle(cpu, cur, max, min) knows how busy its CPU was since the last one
-- (cpufreq.load). luabpf compiles it with the policy script; both programs share the
-- per-CPU records of compiler/hooks/cpufreq.py.
function tracepoint.sched.sched_switch(args)
  luabpf.idle_switch(args.prev_pid, args.next_pid)
end
