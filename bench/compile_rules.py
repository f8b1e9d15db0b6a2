"""Compile time against script size: generated rule files and doubling call trees.

    .venv/bin/python bench/compile_rules.py [--json] [--rules 100,300,1000] [--levels 10,20]

Compiles and loads (the kernel verifier) rule files of N one-rule helper functions
called from a filter (bench/gen_calls.py), and a call tree that doubles at each level
(f(k) calls f(k-1) twice; 2^levels leaf calls from a dozen lines per ten levels); prints
the compile and verify times, the per-rule time, the instructions and how many BPF
functions the program has. Issue 9's targets: 1000 rules compile and verify in 3 s or
less on a 2-core machine, the per-rule time does not grow with the rule count, the tree
compiles in well under a second at 10 and 20 levels.

A benchmark, not a test: nothing here asserts a timing. Needs root (bpf(2)) to verify;
without it, compile times only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import luabpf  # noqa: E402
from gen_calls import doubling_tree, rule_file  # noqa: E402


def measure(label: str, source: str, units: int, verify: bool) -> dict:
    t0 = time.perf_counter()
    # a doubling tree really makes 2^levels calls a run, over the packet budget (which
    # only the run time cares about): measured here is the compile time
    prog = luabpf.compile(source, filename=f"{label}.lua", hook="xdp", budget=10**12)
    t1 = time.perf_counter()
    verify_s = None
    if verify:
        with prog.load():
            verify_s = time.perf_counter() - t1
    compiled = prog.compiled if hasattr(prog, "compiled") else prog
    return {"case": label, "units": units, "lines": source.count("\n"),
            "compile_s": t1 - t0, "verify_s": verify_s,
            "total_s": (t1 - t0) + (verify_s or 0.0),
            "per_unit_ms": 1000 * ((t1 - t0) + (verify_s or 0.0)) / units,
            "insns": prog.insn_count, "functions": len(getattr(compiled, "funcs", [1]))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rules", default="100,300,1000")
    ap.add_argument("--levels", default="10,20")
    args = ap.parse_args(argv)
    verify = os.geteuid() == 0
    rows = []
    for n in (int(x) for x in args.rules.split(",") if x):
        rows.append(measure(f"rules_{n}", rule_file(n), n, verify))
    for k in (int(x) for x in args.levels.split(",") if x):
        rows.append(measure(f"tree_{k}", doubling_tree(k), 2 ** k, verify))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'case':<12}{'lines':>7}{'compile s':>11}{'verify s':>10}{'total s':>9}"
          f"{'per rule/leaf ms':>18}{'insns':>8}{'functions':>11}")
    for r in rows:
        v = f"{r['verify_s']:.3f}" if r["verify_s"] is not None else "-"
        print(f"{r['case']:<12}{r['lines']:>7}{r['compile_s']:>11.3f}{v:>10}{r['total_s']:>9.3f}"
              f"{r['per_unit_ms']:>18.4f}{r['insns']:>8}{r['functions']:>11}")
    if not verify:
        print("(not root: compile times only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
