"""The `luabpf` command as a user runs it: a real process, its output and exit code."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from cli_runner import ROOT, json_failure, run_luabpf, write_script

EXAMPLE = os.path.join(ROOT, "examples", "intmath.lua")


# ---- in the kernel (what needs none is tests/unit/test_cli_offline.py) ------------------

@pytest.mark.kernel
def test_check_passes_the_verifier_for_every_function():
    r = run_luabpf("check", EXAMPLE, "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["program"] for row in rows] == ["function/gcd", "function/isqrt", "function/collatz",
                                                "function/bits", "function/perfect"]
    assert all(row["verified"] for row in rows)


@pytest.mark.kernel
@pytest.mark.parametrize("args,out", [
    (["gcd", "1071", "462"], "21"), (["bits", "-1"], "64\t1"), (["perfect", "28"], "28\ttrue"),
    (["collatz", "0x1b"], "111"),
])
def test_call_runs_a_function_in_the_kernel(args, out):
    r = run_luabpf("call", EXAMPLE, *args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == out


@pytest.mark.kernel
def test_a_runtime_error_is_reported_at_its_line_with_exit_1():
    r = run_luabpf("call", EXAMPLE, "isqrt", "-4")
    assert r.returncode == 1
    assert r.stderr.strip() == f"{EXAMPLE}:18: isqrt of a negative number"


@pytest.mark.kernel
def test_demo_runs():
    r = run_luabpf("demo")
    assert r.returncode == 0, r.stderr
    assert "XDP_DROP" in r.stdout and "TC_ACT_SHOT" in r.stdout
    assert "gcd(1071, 462)" in r.stdout and "21" in r.stdout


@pytest.mark.kernel
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is needed to drop root")
def test_without_bpf_privileges_one_sentence_and_exit_1():
    r = run_luabpf("call", EXAMPLE, "gcd", "4", "6", capabilities="")
    assert r.returncode == 1
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0] == ("luabpf: loading a function program needs CAP_BPF; this process lacks "
                        "CAP_BPF (this root process had it dropped: give it CAP_BPF).")
    assert "Traceback" not in r.stderr


@pytest.mark.kernel
def test_call_shows_what_the_function_prints_then_what_it_returns(tmp_path):
    script = write_script(tmp_path, 'function f(a)\n  print(a, "x", nil, a > 2)\n'
                                     '  if a == 0 then error("zero") end\n  return a * 2\nend\n',
                          "p.lua")
    r = run_luabpf("call", script, "f", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "6\n"
    assert r.stderr == f"{script}:2: 3\tx\tnil\ttrue\n"
    j = run_luabpf("call", script, "f", "3", "--json")
    lines = [json.loads(l) for l in j.stdout.splitlines()]
    assert lines == [{"event": "print", "file": script, "line": 2, "values": [3, "x", None, True],
                      "text": "3\tx\tnil\ttrue"}, [6]]
    e = run_luabpf("call", script, "f", "0")
    assert e.returncode == 1
    assert e.stderr.splitlines() == [f"{script}:2: 0\tx\tnil\tfalse", f"{script}:3: zero"]


# ---- --json on failure --------------------------------------------------------------------

@pytest.mark.kernel
def test_json_verifier_and_runtime_errors_are_located(tmp_path):
    [d] = json_failure(run_luabpf("call", EXAMPLE, "isqrt", "-4", "--json"), 1)
    assert (d["file"], d["line"], d["message"]) == (EXAMPLE, 18, "isqrt of a negative number")
    ssh = os.path.join(ROOT, "examples", "ssh_filter.lua")
    [d] = json_failure(run_luabpf("check", ssh, "--loops", "bounded", "--json"), 1)
    assert d["file"] == ssh and isinstance(d["line"], int)
    assert d["message"].startswith("the kernel verifier rejected the program: ")


@pytest.mark.kernel
def test_json_run_failures_are_json(tmp_path):
    script = write_script(tmp_path, "function filter(hdr, pld)\n  return true\nend\n", "f.lua")
    [d] = json_failure(run_luabpf("run", script, "--xdp", "nosuchdev7", "--json"), 1)
    assert d == {"file": script, "line": None, "column": None, "hint": None, "severity": "error",
                 "message": "nosuchdev7: no such network interface in this network namespace"}
    policy = os.path.join(ROOT, "examples", "overheat.lua")
    [d] = json_failure(run_luabpf("run", policy, "--cpufreq", "--sysfs-root", str(tmp_path),
                                  "--json"), 1)
    assert "is not a sysfs tree with CPUs" in d["message"]


@pytest.mark.kernel
def test_loops_bounded_on_a_kernel_with_may_goto_does_what_was_asked(tmp_path):
    from luabpf.runtime import features
    assert features.has_may_goto()             # the case of the issue: the kernel has it
    path = write_script(tmp_path, "function f(n)\n  local s = 0\n  --@bound 50\n"
                                  "  for i = 1, n do s = s + i end\n  return s\nend\n", "sum.lua")
    asm = run_luabpf("compile", path, "--asm", "--loops", "bounded")
    assert asm.returncode == 0, asm.stderr
    assert "may_goto" not in asm.stdout
    assert "may_goto" in run_luabpf("compile", path, "--asm").stdout       # what it does unasked
    r = run_luabpf("check", path, "--loops", "bounded", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)[0]["verified"], r.stderr
    assert run_luabpf("call", path, "f", "10").stdout == "55\n"
    unbounded = run_luabpf("check", EXAMPLE, "--loops", "bounded")
    assert unbounded.returncode == 1
    assert f"{EXAMPLE}:10:3: error: --loops bounded compiles loops without may_goto, so the " \
           "verifier walks every iteration" in unbounded.stderr
    assert "this kernel has no may_goto" not in unbounded.stderr
