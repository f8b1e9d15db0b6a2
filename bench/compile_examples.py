"""Compile time of each example, in process: `luabpf.api.compile_file`, best of N runs,
nothing loaded (loops='may_goto', so the kernel is not asked). A benchmark, never a test.

    .venv/bin/python bench/compile_examples.py [--rounds N]
"""
from __future__ import annotations

import argparse
import glob
import os
import time

from luabpf import api

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs per example; the best is kept")
    args = parser.parse_args()
    total = 0.0
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "*.lua"))):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        best = min(_timed(text, os.path.basename(path)) for _ in range(args.rounds))
        total += best
        print(f"{os.path.basename(path):20s} {best * 1000:7.1f} ms")
    print(f"{'total':20s} {total * 1000:7.1f} ms")


def _timed(text: str, name: str) -> float:
    start = time.perf_counter()
    api.compile_file(text, name, loops="may_goto")
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
