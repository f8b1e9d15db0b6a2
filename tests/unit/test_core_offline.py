"""The compiler core where no kernel is needed: a program whose stack is too large is a
compile error, and a verifier log read by `explain()` (a fixed log, as the verifier
printed it in CI). (Execution against Lua 5.4 is tests/kernel/test_core.py.)"""
from __future__ import annotations

import pytest

import luabpf


def test_a_program_that_needs_more_than_512_bytes_of_stack_is_a_compile_error():
    n = 80
    body = "\n".join(f"  local v{i} = a * {i + 2}" for i in range(n))
    total = " + ".join(f"v{i}" for i in range(n))
    src = f"function f(a)\n{body}\n  return {total}\nend"
    with pytest.raises(luabpf.CompileError) as e:
        luabpf.run_function(src, "f", 1)
    assert "bytes of stack" in str(e.value)


def test_path_budget_is_recognised_when_the_log_glues_it_to_an_instruction():
    """The verifier can print its give-up on the same line as the last instruction it
    walked (seen in CI); the refusal must still say why, at a Lua line."""
    from luabpf.api import compile_function
    from luabpf.runtime.load import explain
    compiled = compile_function("function f(a)\n  return a + 1\nend\n", "f", ("int",))
    log = ("0: (79) r1 = *(u64 *)(r1 +24)        ; R1=scalar()\n"
           "1: (07) r1 += 1 BPF program is too large. Processed 1000001 insn\n"
           "processed 1000001 insns (limit 1000000) max_states_per_insn 39 total_states 58470\n")
    error = explain(compiled.compiled, log)
    assert "too many paths" in str(error)
    assert error.line in (1, 2)
