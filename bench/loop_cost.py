"""What a counted instruction costs in the kernel: the measurements behind the hooks'
cost budgets (docs/language.md, "Cost of a run").

    .venv/bin/python bench/loop_cost.py [--json]

Compiles XDP filters whose worst case is one loop (arithmetic only; a map lookup in
every trip) at several trip counts, runs each with BPF_PROG_TEST_RUN (the mean of
`repeat` runs, best of 5) and prints the time per run next to the worst-case estimate
(`Program.worst_case`), so ns per counted instruction. Then Lua's quadratic backtracking:
`("a*b")` over payloads of `a`s, whose estimate is counted but not budgeted.
A benchmark, not a test: nothing asserts a time. Needs root.
"""
from __future__ import annotations

import argparse
import json
import sys

import luabpf

ARITH = """n = 0
function filter(hdr, pld)
  local s = 0
  --@bound {trips}
  for i = 1, n + {trips} do
    s = s + (i ~ s) * 3
  end
  return s ~= 12345
end
"""
LOOKUP = """n = 0
counts = map.hash(1024)
function filter(hdr, pld)
  local s = 0
  --@bound {trips}
  for i = 1, n + {trips} do
    s = s + (counts[i & 1023] or 1)
  end
  return s ~= 12345
end
"""
PATTERN = 'function filter(hdr, pld)\n  return tostring(pld):match("a*b") == nil\nend\n'


def udp_frame(payload: bytes) -> bytes:
    ip_len = 20 + 8 + len(payload)
    return (bytes.fromhex("ffffffffffff0000000000010800")
            + bytes.fromhex("4500") + ip_len.to_bytes(2, "big")
            + bytes.fromhex("0000000040110000") + bytes([10, 0, 0, 1, 10, 0, 0, 2])
            + bytes.fromhex("12341234") + (8 + len(payload)).to_bytes(2, "big") + b"\0\0"
            + payload)


def best_ns(prog, frame: bytes, repeat: int) -> int:
    with prog.load() as p:
        return min(p.run(frame, repeat=repeat, timed=True)[1] for _ in range(5))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    frame = udp_frame(b"x" * 22)
    for name, src in (("arithmetic", ARITH), ("map lookup", LOOKUP)):
        for trips in (1_000, 10_000, 100_000):
            prog = luabpf.compile(src.format(trips=trips), "bench.lua", "xdp", budget=1 << 40)
            ns = best_ns(prog, frame, 2000 if trips < 10_000 else 100)
            rows.append({"loop": name, "trips": trips, "worst_case": prog.worst_case, "ns": ns,
                         "ns_per_instruction": round(ns / prog.worst_case, 3)})
    prog = luabpf.compile(PATTERN, "bench.lua", "xdp")
    for size in (100, 1000):
        ns = best_ns(prog, udp_frame(b"a" * size), 20)
        rows.append({"loop": f'match("a*b") on {size} a', "trips": size, "worst_case": prog.worst_case,
                     "ns": ns, "ns_per_instruction": None})
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'loop':<26}{'trips':>9}{'worst case':>22}{'ns per run':>12}{'ns/instr':>10}")
    for r in rows:
        per = "" if r["ns_per_instruction"] is None else f"{r['ns_per_instruction']:.3f}"
        print(f"{r['loop']:<26}{r['trips']:>9,}{r['worst_case']:>22,}{r['ns']:>12,}{per:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
