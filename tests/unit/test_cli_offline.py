"""The `luabpf` command as a user runs it, where no kernel is needed: usage errors, compile
errors, `compile --asm`, `--version`, `--json` on failure. A real process, its output and
exit code. (What needs the kernel is tests/kernel/test_cli.py.)"""
from __future__ import annotations

import os

import pytest

from cli_runner import ROOT, json_failure, run_luabpf, write_script

EXAMPLE = os.path.join(ROOT, "examples", "intmath.lua")


@pytest.mark.parametrize("args", [[], ["bogus"], ["compile"], ["call", "x.lua"]])
def test_usage_errors_exit_2(args):
    r = run_luabpf(*args)
    assert r.returncode == 2
    assert "usage:" in r.stderr and "Traceback" not in r.stderr


def test_missing_file_is_a_usage_error(tmp_path):
    r = run_luabpf("compile", str(tmp_path / "nope.lua"))
    assert r.returncode == 2 and "no such file" in r.stderr


def test_compile_asm_shows_assembly_with_lua_lines():
    r = run_luabpf("compile", EXAMPLE, "--asm")
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
    path = write_script(tmp_path, text, "bad.lua")
    r = run_luabpf("compile", path)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{path}:{line}:{col}: error: "), r.stderr
    assert fragment in r.stderr
    assert "^" in r.stderr and "Traceback" not in r.stderr


def test_a_script_with_every_kind_of_error_reports_them_all(tmp_path):
    path = write_script(tmp_path, "function f(x)\n  local a = 1.5\n  goto out\n  return y\nend\n",
                        "bad.lua")
    r = run_luabpf("compile", path)
    assert r.returncode == 1
    assert r.stderr.count("error:") == 3, r.stderr


def test_errors_of_every_function_are_reported_in_one_run(tmp_path):
    path = write_script(tmp_path, "function f(n)\n  while n > 0 do n = n - 1 end\n  return n\nend\n"
                                  "function g(n)\n  while n > 1 do n = n // 2 end\n  return n\nend\n",
                        "two.lua")
    r = run_luabpf("compile", path, "--loops", "bounded")
    assert r.returncode == 1
    assert [l.split(": error")[0] for l in r.stderr.splitlines() if ": error:" in l] == \
        [f"{path}:2:3", f"{path}:6:3"], r.stderr


def test_version_prints_the_package_version():
    from importlib.metadata import version
    r = run_luabpf("--version")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"luabpf {version('luabpf')}\n", "")


SUBCOMMANDS = {"compile": ["x.lua"], "check": ["x.lua"], "call": ["x.lua", "f"], "test": ["x.lua", "--packet", "00"],
               "run": ["x.lua"], "set": ["n", "A=1"], "ls": [], "map": ["n", "m", "dump"],
               "inspect": ["x.o"], "demo": []}


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_a_subcommands_usage_errors_show_its_own_usage(command):
    r = run_luabpf(command, *SUBCOMMANDS[command], "--bogus")
    assert r.returncode == 2
    assert r.stderr.startswith(f"usage: luabpf {command} "), r.stderr
    assert r.stderr.rstrip().endswith(f"luabpf {command}: error: unrecognized arguments: --bogus")
    assert r.stdout == ""


@pytest.mark.parametrize("command", ["compile", "check", "call", "test", "run"])
def test_a_bad_max_loop_shows_the_subcommands_usage(command):
    r = run_luabpf(command, *SUBCOMMANDS[command], "--max-loop", "0")
    assert r.returncode == 2
    assert r.stderr.startswith(f"usage: luabpf {command} "), r.stderr
    assert r.stderr.rstrip().endswith(
        f"luabpf {command}: error: argument --max-loop: must be between 1 and "
        "9223372036854775807 (2^63 - 1), not 0")


@pytest.mark.parametrize("command", ["check", "call", "test", "run", "ls", "map"])
def test_json_usage_errors_are_json_too(command):
    [d] = json_failure(run_luabpf(command, *SUBCOMMANDS[command], "--json", "--bogus"), 2)
    assert d["message"] == "unrecognized arguments: --bogus" and d["severity"] == "error"
    assert d["hint"].startswith(f"usage: luabpf {command} ")


def test_json_only_for_commands_that_take_it():
    r = run_luabpf("compile", "x.lua", "--json")
    assert r.returncode == 2 and r.stdout == "" and "unrecognized arguments: --json" in r.stderr


def test_json_compile_errors_are_located(tmp_path):
    path = write_script(tmp_path, "function f(x)\n  local a = 1.5\n  return y\nend\n", "bad.lua")
    ds = json_failure(run_luabpf("check", path, "--json"), 1)
    assert [(d["file"], d["line"], d["column"], d["severity"]) for d in ds] == \
        [(path, 2, 13, "error"), (path, 3, 10, "error")]
    assert "floating-point" in ds[0]["message"] and "unknown name 'y'" in ds[1]["message"]
    assert "error:" in run_luabpf("check", path, "--json").stderr      # the text stays on stderr


def test_json_usage_error_of_a_command(tmp_path):
    [d] = json_failure(run_luabpf("test", str(tmp_path / "nope.lua"), "--packet", "00", "--json"),
                       2)
    assert d["message"] == f"{tmp_path / 'nope.lua'}: no such file"
    [d] = json_failure(run_luabpf("call", EXAMPLE, "gcd", "1.5", "--json"), 2)
    assert "'1.5' is not an integer" in d["message"]
