"""The `luabpf` command as a user runs it: a real process, its output and exit code."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "intmath.lua")


def luabpf(*args, user: str | None = None, cwd: str | None = None):
    cmd = [sys.executable, "-m", "luabpf.cli", *args]
    if user is not None:        # "nobody": no capabilities at all (uid 0 still reads the checkout)
        cmd = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---- in the kernel (what needs none is tests/unit/test_cli_offline.py) ------------------

@pytest.mark.kernel
def test_check_passes_the_verifier_for_every_function():
    r = luabpf("check", EXAMPLE, "--json")
    assert r.returncode == 0, r.stderr
    import json
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
    r = luabpf("call", EXAMPLE, *args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == out


@pytest.mark.kernel
def test_a_runtime_error_is_reported_at_its_line_with_exit_1():
    r = luabpf("call", EXAMPLE, "isqrt", "-4")
    assert r.returncode == 1
    assert r.stderr.strip() == f"{EXAMPLE}:18: isqrt of a negative number"


@pytest.mark.kernel
def test_demo_runs():
    r = luabpf("demo")
    assert r.returncode == 0, r.stderr
    assert "XDP_DROP" in r.stdout and "TC_ACT_SHOT" in r.stdout
    assert "gcd(1071, 462)" in r.stdout and "21" in r.stdout


@pytest.mark.kernel
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is needed to drop root")
def test_without_bpf_privileges_one_sentence_and_exit_1():
    r = luabpf("call", EXAMPLE, "gcd", "4", "6", user="nobody")
    assert r.returncode == 1
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0] == ("luabpf: loading a function program needs CAP_BPF; this process lacks "
                        "CAP_BPF (this root process had it dropped: give it CAP_BPF).")
    assert "Traceback" not in r.stderr


@pytest.mark.kernel
def test_call_shows_what_the_function_prints_then_what_it_returns(tmp_path):
    script = write(tmp_path, "p.lua", 'function f(a)\n  print(a, "x", nil, a > 2)\n'
                                      '  if a == 0 then error("zero") end\n  return a * 2\nend\n')
    r = luabpf("call", script, "f", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "6\n"
    assert r.stderr == f"{script}:2: 3\tx\tnil\ttrue\n"
    j = luabpf("call", script, "f", "3", "--json")
    lines = [json.loads(l) for l in j.stdout.splitlines()]
    assert lines == [{"event": "print", "file": script, "line": 2, "values": [3, "x", None, True],
                      "text": "3\tx\tnil\ttrue"}, [6]]
    e = luabpf("call", script, "f", "0")
    assert e.returncode == 1
    assert e.stderr.splitlines() == [f"{script}:2: 0\tx\tnil\tfalse", f"{script}:3: zero"]


# ---- --json on failure --------------------------------------------------------------------

def failure(r, code: int) -> list[dict]:
    """The --json failure line: the last line of stdout."""
    assert r.returncode == code, (r.stdout, r.stderr)
    last = json.loads(r.stdout.splitlines()[-1])
    assert last["event"] == "error" and last["exit"] == code, last
    for d in last["diagnostics"]:
        assert set(d) == {"file", "line", "column", "message", "hint", "severity"}
    return last["diagnostics"]


@pytest.mark.kernel
def test_json_verifier_and_runtime_errors_are_located(tmp_path):
    [d] = failure(luabpf("call", EXAMPLE, "isqrt", "-4", "--json"), 1)
    assert (d["file"], d["line"], d["message"]) == (EXAMPLE, 18, "isqrt of a negative number")
    ssh = os.path.join(ROOT, "examples", "ssh_filter.lua")
    [d] = failure(luabpf("check", ssh, "--loops", "bounded", "--json"), 1)
    assert d["file"] == ssh and isinstance(d["line"], int)
    assert d["message"].startswith("the kernel verifier rejected the program: ")


@pytest.mark.kernel
def test_json_run_failures_are_json(tmp_path):
    script = write(tmp_path, "f.lua", "function filter(hdr, pld)\n  return true\nend\n")
    [d] = failure(luabpf("run", script, "--xdp", "nosuchdev7", "--json"), 1)
    assert d == {"file": script, "line": None, "column": None, "hint": None, "severity": "error",
                 "message": "nosuchdev7: no such network interface in this network namespace"}
    policy = os.path.join(ROOT, "examples", "overheat.lua")
    [d] = failure(luabpf("run", policy, "--cpufreq", "--sysfs-root", str(tmp_path), "--json"), 1)
    assert "is not a sysfs tree with CPUs" in d["message"]


@pytest.mark.kernel
def test_loops_bounded_on_a_kernel_with_may_goto_does_what_was_asked(tmp_path):
    from luabpf.runtime import features
    assert features.has_may_goto()             # the case of the issue: the kernel has it
    path = write(tmp_path, "sum.lua", "function f(n)\n  local s = 0\n  --@bound 50\n"
                                      "  for i = 1, n do s = s + i end\n  return s\nend\n")
    asm = luabpf("compile", path, "--asm", "--loops", "bounded")
    assert asm.returncode == 0, asm.stderr
    assert "may_goto" not in asm.stdout
    assert "may_goto" in luabpf("compile", path, "--asm").stdout       # what it does unasked
    r = luabpf("check", path, "--loops", "bounded", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)[0]["verified"], r.stderr
    assert luabpf("call", path, "f", "10").stdout == "55\n"
    unbounded = luabpf("check", EXAMPLE, "--loops", "bounded")
    assert unbounded.returncode == 1
    assert f"{EXAMPLE}:10:3: error: --loops bounded compiles loops without may_goto, so the " \
           "verifier walks every iteration" in unbounded.stderr
    assert "this kernel has no may_goto" not in unbounded.stderr
