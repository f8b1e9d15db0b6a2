"""The cost budget from the command line: --budget and --max-loop on every command that
compiles (usage errors, exit 2, for values out of range), the worst case `check` and
`compile` print, and the default packet bound at run time."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import luabpf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SSH = os.path.join(ROOT, "examples", "ssh_filter.lua")
LONG = """function filter(hdr, pld)
  local n = 0
  --@bound 100000000
  while n < 100000000 do
    n = n + 1
  end
  return true
end
"""


def cli(*args):
    return subprocess.run([sys.executable, "-m", "luabpf.cli", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def long_loop(tmp_path):
    path = tmp_path / "long.lua"
    path.write_text(LONG)
    return str(path)


# ---- no kernel needed --------------------------------------------------------------

@pytest.mark.parametrize("command", [["compile"], ["check"], ["test", "--packet", "00"],
                                     ["run", "--xdp", "lo"], ["call"]])
@pytest.mark.parametrize("flag", ["--budget", "--max-loop"])
@pytest.mark.parametrize("value", ["0", "99999999999999999999999", "9223372036854775808", "lots"])
def test_out_of_range_figures_are_usage_errors(long_loop, command, flag, value):
    args = [command[0], long_loop, *command[1:]]
    if command[0] == "call":
        args.append("filter")
    r = cli(*args, f"{flag}={value}")
    assert r.returncode == 2, r.stderr
    assert f"luabpf {command[0]}: error: argument {flag}" in r.stderr      # this command's usage
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr


def test_over_budget_is_a_located_compile_error(long_loop):
    r = cli("compile", long_loop)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{long_loop}:4:3: error: one run of filter may execute up to "), r.stderr
    assert "the while loop at line 4 (bound 100,000,000" in r.stderr


def test_budget_flag_lets_the_author_accept_the_cost(long_loop):
    r = cli("compile", long_loop, "--budget", "2000000000")
    assert r.returncode == 0, r.stderr
    assert "worst case" in r.stdout and "of a budget of 2,000,000,000 per run" in r.stdout


def test_annotation_too_large_is_located_not_internal(tmp_path):
    path = tmp_path / "b.lua"
    path.write_text(LONG.replace("--@bound 100000000", "--@bound 99999999999999999999999"))
    r = cli("compile", str(path))
    assert r.returncode == 1
    assert r.stderr.startswith(f"{path}:3:3: error: '--@bound 99999999999999999999999' is too large")
    assert "internal error" not in r.stderr and "bug" not in r.stderr


def test_a_match_capped_past_the_budget_is_a_located_error(tmp_path):
    path = tmp_path / "m.lua"
    path.write_text("function filter(hdr, pld)\n  local s = tostring(pld)\n  --@bound 1000000\n"
                    "  local v = s:match('a*b')\n  return v == nil\nend\n")
    r = cli("compile", str(path))
    assert r.returncode == 1
    assert r.stderr.startswith(f"{path}:4:13: error: one run of filter may execute up to ")
    assert "the pattern match at line 4 (at most 1,000,000 steps" in r.stderr
    assert "step cap" in r.stderr and "Traceback" not in r.stderr
    assert cli("compile", str(path), "--budget", "100000000").returncode == 0


# ---- in the kernel ----------------------------------------------------------------------

@pytest.mark.kernel
def test_check_prints_the_worst_case_next_to_the_instruction_count():
    r = cli("check", SSH)
    assert r.returncode == 0, r.stderr
    assert "instructions, worst case " in r.stdout
    assert "counting" not in r.stdout            # the match is held to the budget: one figure
    r = cli("check", SSH, "--json")
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
    r = cli("check", str(path))
    assert r.returncode == 0, r.stderr
    assert "counting luabpf's loops over string bytes at their worst" in r.stdout
    assert "pattern" not in r.stdout
