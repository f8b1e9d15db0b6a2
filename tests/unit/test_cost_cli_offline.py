"""The cost budget from the command line where no kernel is needed: --budget and --max-loop
on every command that compiles (usage errors, exit 2, for values out of range), and a
worst case over the budget as a located compile error. (What `check` prints after the
verifier, and the default packet bound at run time, are tests/kernel/test_cost_cli.py.)"""
from __future__ import annotations

import pytest

from cli_runner import LONG_LOOP, run_luabpf, write_script


@pytest.fixture
def long_loop(tmp_path):
    return write_script(tmp_path, LONG_LOOP, "long.lua")


@pytest.mark.parametrize("command", [["compile"], ["check"], ["test", "--packet", "00"],
                                     ["run", "--xdp", "lo"], ["call"]])
@pytest.mark.parametrize("flag", ["--budget", "--max-loop"])
@pytest.mark.parametrize("value", ["0", "99999999999999999999999", "9223372036854775808", "lots"])
def test_out_of_range_figures_are_usage_errors(long_loop, command, flag, value):
    args = [command[0], long_loop, *command[1:]]
    if command[0] == "call":
        args.append("filter")
    r = run_luabpf(*args, f"{flag}={value}")
    assert r.returncode == 2, r.stderr
    assert f"luabpf {command[0]}: error: argument {flag}" in r.stderr      # this command's usage
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr


def test_over_budget_is_a_located_compile_error(long_loop):
    r = run_luabpf("compile", long_loop)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{long_loop}:4:3: error: one run of filter may execute up to "), r.stderr
    assert "the while loop at line 4 (bound 100,000,000" in r.stderr


def test_budget_flag_lets_the_author_accept_the_cost(long_loop):
    r = run_luabpf("compile", long_loop, "--budget", "2000000000")
    assert r.returncode == 0, r.stderr
    assert "worst case" in r.stdout and "of a budget of 2,000,000,000 per run" in r.stdout


def test_annotation_too_large_is_located_not_internal(tmp_path):
    path = tmp_path / "b.lua"
    path.write_text(LONG_LOOP.replace("--@bound 100000000", "--@bound 99999999999999999999999"))
    r = run_luabpf("compile", str(path))
    assert r.returncode == 1
    assert r.stderr.startswith(f"{path}:3:3: error: '--@bound 99999999999999999999999' is too large")
    assert "internal error" not in r.stderr and "bug" not in r.stderr


def test_a_match_capped_past_the_budget_is_a_located_error(tmp_path):
    path = tmp_path / "m.lua"
    path.write_text("function filter(hdr, pld)\n  local s = tostring(pld)\n  --@bound 1000000\n"
                    "  local v = s:match('a*b')\n  return v == nil\nend\n")
    r = run_luabpf("compile", str(path))
    assert r.returncode == 1
    assert r.stderr.startswith(f"{path}:4:13: error: one run of filter may execute up to ")
    assert "the pattern match at line 4 (at most 1,000,000 steps" in r.stderr
    assert "step cap" in r.stderr and "Traceback" not in r.stderr
    assert run_luabpf("compile", str(path), "--budget", "100000000").returncode == 0
