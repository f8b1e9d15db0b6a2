"""Verdict constants where no kernel is needed: `luabpf check` refuses a script that uses
the verdicts of both packet hooks, naming both lines. (What each constant does in the
kernel is tests/kernel/test_verdicts_kernel.py.)"""
from __future__ import annotations

from cli_runner import TC_SCRIPT, run_luabpf


def test_check_refuses_a_script_of_both_hooks_naming_both_lines(tmp_path):
    path = tmp_path / "both.lua"
    path.write_text(TC_SCRIPT.replace("tc.OK", "xdp.PASS"))
    r = run_luabpf("check", str(path))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{path}:6:10: error: this script uses verdicts of both packet hooks" in r.stderr
    assert "xdp.PASS (xdp) at line 6" in r.stderr and "tc.SHOT (tc) at line 4" in r.stderr
