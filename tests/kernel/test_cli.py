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


# ---- no kernel needed --------------------------------------------------------------

@pytest.mark.parametrize("args", [[], ["bogus"], ["compile"], ["call", "x.lua"]])
def test_usage_errors_exit_2(args):
    r = luabpf(*args)
    assert r.returncode == 2
    assert "usage:" in r.stderr and "Traceback" not in r.stderr


def test_missing_file_is_a_usage_error(tmp_path):
    r = luabpf("compile", str(tmp_path / "nope.lua"))
    assert r.returncode == 2 and "no such file" in r.stderr


def test_compile_asm_shows_assembly_with_lua_lines():
    r = luabpf("compile", EXAMPLE, "--asm")
    assert r.returncode == 0, r.stderr
    assert "; program function/gcd" in r.stdout
    assert "; while b ~= 0 do  @ line 10" in r.stdout
    assert "may_goto" in r.stdout and "exit" in r.stdout


@pytest.mark.parametrize("text,line,col,fragment", [
    ("function f(x)\n  return x * 1.5\nend\n", 2, 14, "floating-point numbers are not available"),
    ("function f(x)\n  return x ^ 2\nend\n", 2, 10, "not available"),
    ("function f(x)\n  return g(x)\nend\n", 2, 10, "unknown name 'g'"),
    ("function f(x)\n  local y = = 3\nend\n", 2, 13, ""),
    ("print(1)\n", 1, 1, "top-level code"),
])
def test_compile_errors_are_located_with_the_source_line_and_a_caret(tmp_path, text, line, col, fragment):
    path = write(tmp_path, "bad.lua", text)
    r = luabpf("compile", path)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{path}:{line}:{col}: error: "), r.stderr
    assert fragment in r.stderr
    assert "^" in r.stderr and "Traceback" not in r.stderr


def test_a_script_with_every_kind_of_error_reports_them_all(tmp_path):
    path = write(tmp_path, "bad.lua", "function f(x)\n  local a = 1.5\n  goto out\n  return y\nend\n")
    r = luabpf("compile", path)
    assert r.returncode == 1
    assert r.stderr.count("error:") == 3, r.stderr


# ---- in the kernel ----------------------------------------------------------------------

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


def test_errors_of_every_function_are_reported_in_one_run(tmp_path):
    path = write(tmp_path, "two.lua", "function f(n)\n  while n > 0 do n = n - 1 end\n  return n\nend\n"
                                      "function g(n)\n  while n > 1 do n = n // 2 end\n  return n\nend\n")
    r = luabpf("compile", path, "--loops", "bounded")
    assert r.returncode == 1
    assert [l.split(": error")[0] for l in r.stderr.splitlines() if ": error:" in l] == \
        [f"{path}:2:3", f"{path}:6:3"], r.stderr
