"""The hooks a program attaches to: one record per hook on a common base (`base`), made by
name from `table` — packet filters (`packet`: xdp, tc), CPU-frequency policies
(`cpufreq`), tracepoints (`tracepoint`), functions (`function`)."""
