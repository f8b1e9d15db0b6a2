"""Verdicts in the kernel: every verdict constant of each hook, and true/false/nil,
give that hook's action under BPF_PROG_TEST_RUN; a script of tc.* constants that
`luabpf check`/`test` are given without --hook is compiled for tc (before, it was
compiled for XDP, where tc.SHOT = 2 is XDP_PASS); `luabpf run` refuses the other
hook's constants before it attaches anything."""
from __future__ import annotations

import json
import os

import pytest

import luabpf
from luabpf.compiler.hooks.packet import ACTIONS, TC_ACT_OK, TC_ACT_SHOT, XDP_DROP, XDP_PASS
from luabpf.runtime.packets import udp_frame

from cli_runner import TC_SCRIPT, run_luabpf

pytestmark = pytest.mark.kernel

FRAME = udp_frame("10.0.0.1", "10.0.0.2", 1234, 53, b"payload")


def verdict_of(src: str, hook: str) -> int:
    with luabpf.compile(src, "v.lua", hook=hook).load() as loaded:
        return int(loaded.run(FRAME))


@pytest.mark.parametrize("module, name", sorted(ACTIONS))
def test_each_constant_is_its_hooks_action(module, name):
    assert verdict_of(f"function filter(hdr, pld)\n  return {module}.{name}\nend", module) \
        == ACTIONS[(module, name)]


@pytest.mark.parametrize("hook, passes, drops", [("xdp", XDP_PASS, XDP_DROP),
                                                 ("tc", TC_ACT_OK, TC_ACT_SHOT)])
def test_true_false_nil_mean_pass_and_drop_on_both_hooks(hook, passes, drops):
    for ret, want in (("true", passes), ("false", drops), ("nil", passes), ("", passes)):
        assert verdict_of(f"function filter(hdr, pld)\n  return {ret}\nend", hook) == want
    # known only at run time
    src = "function filter(hdr, pld)\n  return not (hdr.udp and hdr.udp.dport == {})\nend"
    assert verdict_of(src.format(53), hook) == drops
    assert verdict_of(src.format(54), hook) == passes


def test_check_without_hook_judges_a_tc_script_as_tc(tmp_path):
    path = tmp_path / "tc_only.lua"
    path.write_text(TC_SCRIPT)
    r = run_luabpf("check", str(path))
    assert r.returncode == 0, r.stderr
    assert "tc/filter: verified by the kernel" in r.stdout and "xdp" not in r.stdout


def test_test_without_hook_runs_a_tc_script_as_tc(tmp_path):
    path = tmp_path / "tc_only.lua"
    path.write_text(TC_SCRIPT)
    r = run_luabpf("test", str(path), "--json", "--packet", FRAME.hex())
    assert r.returncode == 0, r.stderr
    [row] = [json.loads(line) for line in r.stdout.splitlines()]
    assert row["verdict"] == "TC_ACT_SHOT" and row["action"] == TC_ACT_SHOT


@pytest.mark.parametrize("flag, constants, message", [
    ("--xdp", {}, "4:12: error: tc.SHOT is a tc verdict; this program is compiled for xdp: "
                  "use xdp.DROP (or false)"),
    ("--tc", {"tc.SHOT": "xdp.DROP", "tc.OK": "xdp.PASS"},
     "4:12: error: xdp.DROP is an xdp verdict; this program is compiled for tc: "
     "use tc.SHOT (or false)"),
])
def test_run_refuses_the_other_hooks_constants_before_attaching(tmp_path, flag, constants,
                                                                message):
    text = TC_SCRIPT
    for old, new in constants.items():
        text = text.replace(old, new)
    path = tmp_path / "filter.lua"
    path.write_text(text)
    r = run_luabpf("run", str(path), flag, "lo", "--duration", "1",
                   "--name", f"verdicts-test-{os.getpid()}")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{path}:{message}" in r.stderr
    assert "attached" not in r.stdout + r.stderr
