"""`luabpf compile FILE -o OUT.o` where no kernel is needed: a map named like a program's
symbol, an output that cannot be written. (Objects loaded by libbpf, bpftool, ip and tc
are tests/kernel/test_objects.py.)"""
from __future__ import annotations

import os

import pytest

from cli_runner import ROOT, run_luabpf


@pytest.mark.parametrize("source,words", [
    ("sched_switch = map.hash(4)\nfunction tracepoint.sched.sched_switch(args)\n"
     "  map.add(sched_switch, args.next_pid, 1)\nend\n",
     "map 'sched_switch' has the name of a program"),
    ("_license = map.hash(4)\nfunction filter(hdr, pld)\n  _license[1] = 1\nend\n",
     "map '_license' has the name of a program"),
])
def test_a_map_whose_symbol_clashes_is_a_clear_error(tmp_path, source, words):
    script = tmp_path / "clash.lua"
    script.write_text(source)
    out = tmp_path / "clash.o"
    r = run_luabpf("compile", str(script), "-o", str(out))
    assert r.returncode == 1 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()


def test_an_unwritable_output_is_a_usage_error(tmp_path):
    r = run_luabpf("compile", os.path.join(ROOT, "examples", "icmp_guard.lua"), "-o",
                   str(tmp_path / "no" / "such" / "dir.o"))
    assert r.returncode == 2 and "cannot write it" in r.stderr
