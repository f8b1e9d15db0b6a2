"""The kernel cost of a CPU-frequency policy call (issue 5), next to the paper's 8 µs.

    .venv/bin/python bench/policy.py [--seconds S] [--interval MS] [--json]

Runs each example policy (examples/ondemand.lua, examples/overheat.lua) with
`luabpf run FILE --cpufreq` on a simulated sysfs tree, the kernel's run-time statistics
on (BPF_ENABLE_STATS), and reads run_time_ns / run_cnt of its timer program and of its
sched_switch companion. An empty policy (`function throttle() end`: the call, the idle
accounting and nothing else) is measured the same way: its cost is the floor of what the
kernel's statistics report on this machine (a program that runs every few milliseconds
on an otherwise idle CPU finds cold caches). The same policies are also measured warm:
throttle compiled as an XDP program (same code, same records; nothing reads the packet)
and run a million times by BPF_PROG_TEST_RUN, which gives what the code itself costs.
A benchmark, not a test: nothing asserts a time. Needs root.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PAPER_NS = 8000
TARGET_NS = 100
EMPTY = "function throttle(cpu, cur, max, min)\nend\n"


def measure(script: str, seconds: float, interval: int) -> dict:
    from luabpf.runtime.attach.perf import online_cpus
    from luabpf.runtime.cpufreq import make_simulated
    with tempfile.TemporaryDirectory() as tmp:
        make_simulated(os.path.join(tmp, "sys"), cpus=online_cpus())
        r = subprocess.run([sys.executable, "-m", "luabpf.cli", "run", script, "--cpufreq",
                            "--sysfs-root", os.path.join(tmp, "sys"), "--interval", str(interval),
                            "--duration", str(seconds), "--json", "--name", "bench-policy"],
                           capture_output=True, text=True, cwd=ROOT, timeout=seconds + 60)
    if r.returncode != 0:
        raise SystemExit(f"bench: {script}: {r.stderr.strip()}")
    last = json.loads(r.stdout.splitlines()[-1])
    return last["programs"]


def warm_ns(path: str, repeat: int) -> float:
    """ns per call of the policy's throttle, run warm (see the module doc)."""
    from luabpf import api
    from luabpf.compiler.hooks.cpufreq import ThrottleHook, policy_chunk, policy_hooks
    from luabpf.compiler.front.source import Source
    from luabpf.compiler.program import compile_script, parse_and_check
    from luabpf.runtime.load import LoadedProgram
    with open(path, encoding="utf-8") as f:
        text = f.read()
    fields = api.tracepoint_hook("sched", "sched_switch").fields
    chunk = policy_chunk(parse_and_check(text, path), Source(text, path))
    hooks = policy_hooks(fields, ThrottleHook(prog_type=6))     # throttle as an XDP program
    throttle = compile_script(text, path, hooks, chunk=chunk)[0]
    with LoadedProgram(throttle) as loaded:
        best = min(loaded.run(bytes(64), repeat=repeat, timed=True)[1] for _ in range(3))
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--interval", type=int, default=20, help="ms between calls (default 20)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeat", type=int, default=1_000_000, help="warm runs (default 10^6)")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(EMPTY)
        empty = f.name
    try:
        scripts = [("empty policy (floor)", empty)] + [
            (name, os.path.join(ROOT, "examples", name)) for name in ("ondemand.lua", "overheat.lua")]
        for label, path in scripts:
            p = measure(path, args.seconds, args.interval)
            rows.append({"policy": label, "calls": p["throttle"]["run_cnt"],
                         "ns_per_call": p["throttle"]["ns_per_run"],
                         "sched_switch_ns": p["sched_switch"]["ns_per_run"],
                         "warm_ns": warm_ns(path, args.repeat)})
    finally:
        os.unlink(empty)
    floor = rows[0]["ns_per_call"] or 0
    for r in rows:
        r["above_floor_ns"] = round((r["ns_per_call"] or 0) - floor, 1)
        r["paper_ratio"] = round(PAPER_NS / r["ns_per_call"], 1) if r["ns_per_call"] else None
    if args.json:
        json.dump({"interval_ms": args.interval, "rows": rows, "paper_ns": PAPER_NS}, sys.stdout,
                  indent=1)
        print()
        return 0
    from rich.console import Console
    from rich.table import Table
    t = Table(title=f"CPU-frequency policy: kernel time per call (bpf_stats), every {args.interval} ms "
                    f"on each CPU; the paper's interpreted Lua: {PAPER_NS:,} ns; target < {TARGET_NS} ns")
    for col in ("policy", "calls", "ns/call", "above the empty policy", "paper ÷ luabpf",
                "sched_switch companion ns/call", "warm ns/call (test run)"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for r in rows:
        t.add_row(r["policy"], f"{r['calls']:,}", f"{r['ns_per_call']:,.0f}", f"{r['above_floor_ns']:,.0f}",
                  f"{r['paper_ratio']}×", f"{r['sched_switch_ns']:,.0f}", f"{r['warm_ns']:,.0f}")
    Console().print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
