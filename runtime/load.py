"""Loading a compiled program into the kernel, and running it there.

Owns `LoadedProgram`: creates the program's maps and fills their initial
contents, patches map fds into the instructions, passes the kernel verifier
(`LoadError` maps the verifier's complaint back to the Lua line it came
from), runs the program with BPF_PROG_TEST_RUN, reads its runtime error
counts, and closes every fd it opened.
"""
from __future__ import annotations

import os
import re

from luabpf.compiler.bpf.uapi import ProgType
from luabpf.compiler.obj.btf import load_info
from luabpf.compiler.program import CompiledProgram, merged_map_specs, script_manifest
from luabpf.runtime import kernel
from luabpf.runtime.call import call
from luabpf.runtime.errors import load_problem
from luabpf.runtime.state import ProgramState, StateViews
from luabpf.runtime.verdicts import action_for

_INSN_LINE = re.compile(r"^(\d+): \(([0-9a-f]{2})\)")


class LoadError(Exception):
    """The kernel refused the program: the verifier's words, at the Lua line."""

    def __init__(self, message: str, file: str, line: int | None, log: str = ""):
        self.message, self.file, self.line, self.log = message, file, line, log
        where = f"{file}:{line}: " if line else f"{file}: "
        super().__init__(f"{where}the kernel verifier rejected the program: {message}")


def slot_to_insn(compiled: CompiledProgram) -> dict[int, object]:
    table, slot = {}, 0
    for insn in compiled.insns:
        table[slot] = insn
        slot += insn.slots
    return table


def explain(compiled: CompiledProgram, log: str) -> LoadError:
    """The verifier's last complaint and the Lua line of the instruction it was at."""
    lines = [l for l in log.splitlines() if l.strip()]
    last_slot = None
    message = ""
    for l in lines:
        m = _INSN_LINE.match(l)
        if m:
            last_slot = int(m.group(1))
    tail = [l for l in lines if not _INSN_LINE.match(l) and not l.startswith(("processed ", "from ", ";"))
            and not re.match(r"^\d+:", l)]
    if tail:
        message = tail[-1].strip()
    line = None
    if last_slot is not None:
        insn = slot_to_insn(compiled).get(last_slot)
        loc = getattr(insn, "loc", None)
        line = getattr(loc, "line", None)
    if "program is too large" in log or "jumps is too complex" in log:
        message = ("it gave up after exploring 1,000,000 instructions: too many paths through "
                   "the code (each condition in a loop body doubles them, and a loop without "
                   "may_goto is walked iteration by iteration); move conditions out of loops, "
                   "lower --@bound, or simplify")
    return LoadError(message or "rejected", compiled.source.filename, line, log)


class LoadedScript(StateViews):
    """Programs of one script the kernel verified, sharing their maps; a context manager
    that closes every fd. `.programs` (CompiledProgram) and `.fds` go together."""

    def __init__(self, programs: list[CompiledProgram]):
        problem = load_problem([c.hook.prog_type for c in programs])
        if problem is not None:           # named before any map is made (docs/running.md, "Privileges")
            raise problem
        self.programs = list(programs)
        self.map_fds: dict[str, int] = {}
        self.fds: list[int] = []
        self._state = None
        try:
            for spec in merged_map_specs(self.programs):
                fd = kernel.map_create(spec.type, spec.key_size, spec.value_size, spec.max_entries,
                                       name=spec.name[:15], flags=spec.flags)
                self.map_fds[spec.name] = fd
                for k, v in spec.initial.items():
                    kernel.map_update(fd, k, v)
            for compiled in self.programs:
                self.fds.append(_load(compiled, self.map_fds))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
            self._state = None
        for fd in list(self.map_fds.values()) + self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.map_fds.clear()
        self.fds = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def manifest(self) -> dict:
        return script_manifest(self.programs)

    # ---- what user space sees: runtime.state.ProgramState ----
    @property
    def state(self):
        if self._state is None:
            self._state = ProgramState(self.map_fds, self.manifest())
        return self._state


def _load(compiled: CompiledProgram, map_fds: dict[str, int]) -> int:
    """Load one program with its maps' fds and its BTF (a FUNC for the entry, a line record
    per Lua line, so bpftool and the verifier's log show Lua lines); LoadError (the
    verifier's words at a Lua line)."""
    hook = compiled.hook
    code = compiled.bytecode(map_fds)
    name = _prog_name(hook)
    blob, func_info, line_info = load_info(compiled, name)
    with kernel.btf_load(blob) as btf_fd:
        try:
            return kernel.load_with_log(
                hook.prog_type, code, license="GPL", name=name,
                prog_flags=hook.prog_flags, expected_attach_type=hook.expected_attach_type,
                btf_fd=btf_fd, func_info=func_info, func_info_cnt=len(func_info) // 8,
                line_info=line_info, line_info_cnt=len(line_info) // 16)
        except kernel.BpfError as e:
            if not e.log:
                raise
            raise explain(compiled, e.log) from None


class LoadedProgram(LoadedScript):
    """One program the kernel verified (the common case: a filter, a function)."""

    def __init__(self, compiled: CompiledProgram):
        super().__init__([compiled])

    @property
    def compiled(self) -> CompiledProgram:
        return self.programs[0]

    @property
    def fd(self) -> int:
        return self.fds[0] if self.fds else -1

    @property
    def prog_type(self) -> int:
        return self.compiled.hook.prog_type

    def run(self, frame: bytes, repeat: int = 1, timed: bool = False):
        """BPF_PROG_TEST_RUN on one frame: the verdict (an IntEnum); with timed=True,
        (verdict, mean ns per run) over `repeat` runs."""
        if len(frame) < 14:
            raise ValueError("a frame needs at least 14 bytes (an Ethernet header)")
        try:
            res = kernel.prog_test_run(self.fd, data_in=bytes(frame), repeat=repeat)
        except kernel.BpfError as e:
            if e.errno == 22 and self.prog_type == ProgType.SCHED_CLS:
                raise ValueError("the kernel's test run of a tc program refuses this frame "
                                 "(its IP header is cut short)") from None
            raise
        verdict = action_for(self.prog_type, res.retval)
        return (verdict, res.duration_ns) if timed else verdict

    def call(self, *args):
        """Run a function-hook program once (as `luabpf.run_function` does, but on this
        loaded program, so its maps and globals persist between calls)."""
        return call(self, args)

    def run_ctx(self, ctx: bytes) -> bytes:
        """BPF_PROG_TEST_RUN with a context the program reads and writes back."""
        res = kernel.prog_test_run(self.fd, ctx_in=ctx, ctx_inout=True)
        return res.ctx_out


def _prog_name(hook) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", (hook.entry or "lua").rsplit(".", 1)[-1])
    return name[:15]
