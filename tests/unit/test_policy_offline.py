"""CPU-frequency policies where no kernel is needed: a policy's mistakes, and the cpufreq
library outside a policy, are located compile errors. (Policies at work are
tests/kernel/test_policy.py.)"""
from __future__ import annotations

import pytest

import luabpf
from luabpf import api

POLICY_ERRORS = [
    ("function throttle(cpu, cur, max, min)\n  cpufreq.target(cpu, max, '<')\nend\n", 2,
     "cpufreq.target takes a CPU, a frequency in kHz and '<=' or '>='"),
    ("function throttle(cpu, cur, max, min)\n  cpufreq.target(cpu, max)\nend\n", 2,
     "'<=' or '>='"),
    ("x = 1\n", 1, "a CPU-frequency policy defines function throttle(cpu, cur, max, min)"),
    ("function throttle(cpu, cur, max, min)\n  return acpi.get_temp()\nend\n", 2,
     "acpi.get_temp takes a CPU number"),
]


@pytest.mark.parametrize("source,line,words", POLICY_ERRORS)
def test_policy_mistakes_are_located_compile_errors(source, line, words):
    with pytest.raises(luabpf.CompileError) as e:
        api.compile_policy(source, "p.lua")
    d = e.value.diagnostics[0]
    assert (d.file, d.line) == ("p.lua", line), str(d)
    assert words in d.message


def test_cpufreq_outside_a_policy_is_a_compile_error():
    with pytest.raises(luabpf.CompileError) as e:
        luabpf.compile("function filter(hdr, pld)\n  cpufreq.target(0, 1, '<=')\nend\n", "f.lua")
    assert "available to a CPU-frequency policy" in str(e.value)
