"""The cost budget from the command line, in the kernel: the worst case `check` prints
next to the verifier's count, and the default packet bound at run time. (Usage errors
and over-budget compile errors are tests/unit/test_cost_cli_offline.py.)"""
from __future__ import annotations

import json
import os

import pytest

import luabpf

from cli_runner import ROOT, run_luabpf

SSH = os.path.join(ROOT, "examples", "ssh_filter.lua")


# ---- in the kernel (what needs none is tests/unit/test_cost_cli_offline.py) -------------

@pytest.mark.kernel
def test_check_prints_the_worst_case_next_to_the_instruction_count():
    r = run_luabpf("check", SSH)
    assert r.returncode == 0, r.stderr
    assert "instructions, worst case " in r.stdout
    assert "counting" not in r.stdout            # the match is held to the budget: one figure
    r = run_luabpf("check", SSH, "--json")
    (row,) = json.loads(r.stdout)
    # the banner match, held by its step cap, is most of the worst case and within budget
    assert row["worst_case_budgeted"] == row["worst_case"] <= row["budget"] == 200_000
    assert row["worst_case"] > 4096 * 10
    assert row["instructions"] > 0


@pytest.mark.kernel
def test_the_default_packet_bound_stops_a_long_loop_at_run_time():
    src = """n = 2000
function filter(hdr, pld)
  local i = 0
  while i < n do i = i + 1 end
  return false
end"""
    prog = luabpf.compile(src, "d.lua", "xdp")
    with prog.load() as p:
        p.run(bytes(64))
        assert p.describe_errors() == ["d.lua:4: loop bound exceeded (1024 iterations; "
                                       "raise it with --@bound N) (1 time)"]
        p.globals["n"] = 1024
        p.run(bytes(64))
        assert len(p.describe_errors()) == 1 and "(1 time)" in p.describe_errors()[0]


@pytest.mark.kernel
def test_check_names_the_unbudgeted_byte_loops_as_what_they_are(tmp_path):
    """Comparing two views is a loop over their bytes that is counted, not budgeted: the
    second figure says so (pattern matching, budgeted, no longer has one)."""
    path = tmp_path / "order.lua"
    path.write_text("function filter(hdr, pld)\n  return pld:segment(0, 10) < pld:segment(10, 10)\nend\n")
    r = run_luabpf("check", str(path))
    assert r.returncode == 0, r.stderr
    assert "counting luabpf's loops over string bytes at their worst" in r.stdout
    assert "pattern" not in r.stdout
