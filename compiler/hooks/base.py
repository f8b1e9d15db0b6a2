"""What every hook record answers: the common base of `packet`, `cpufreq`, `tracepoint` and
`function`'s records (ply's providers are the model).

A hook record is one entry function attached to one kernel hook. It says what the
pipeline asks of it, each with an explicit default here rather than probed for:
- the entry function's name (`entry`), the parameters it may take (`params`, None: any)
  and what it may return (`returns`, for errors);
- the program: `prog_type`, `prog_flags`, `expected_attach_type` (compiler/bpf/uapi.py's
  numbers), `section` (libbpf's name for it in an object file) and `label` (how luabpf
  names the program: `xdp/filter`, `function/gcd`);
- its verdicts: `default_return` (what a failed run returns), `verdict_names` (by number;
  empty: not a verdict-returning hook) and whether it counts them (`count_verdicts`);
- whether the errors map counts its runtime errors (`count_errors`);
- the code it wraps around the entry's body while lowering: `prologue` (the context as
  Lua arguments), `finish_prologue` (set-up in the entry block, once the body is known),
  `epilogue` (the entry's results as the hook's answer), `exit`, `on_error` and
  `opaque_zero` (a zero the verifier cannot know, or None for the globals map's).

A record holds what lowering one program needs (the context register); what compiling
produces (instructions, result counts) is the `CompiledProgram`'s, never the record's.
Which functions of a script are a hook's entries, and how a hook's records are made, is
`table`'s.
"""
from __future__ import annotations

from luabpf.compiler import ir
from luabpf.compiler.lower.values import Val


class Hook:
    """The defaults of a hook record; each hook overrides what differs."""
    name: str = ""
    entry: str = ""
    params: tuple | None = None
    returns: str = "integers, booleans or nil"
    prog_type: int = 0
    prog_flags: int = 0
    expected_attach_type: int = 0
    section: str = ""
    default_return: int = 0
    verdict_names: tuple = ()
    count_verdicts: bool = False
    count_errors: bool = True

    @property
    def label(self) -> str:
        """How luabpf names this program: HOOK/ENTRY (`xdp/filter`, `function/gcd`)."""
        return f"{self.name}/{self.entry}"

    def prologue(self, lw) -> list[Val]:
        """Into the entry block, before anything clobbers r1: the entry's arguments."""
        return []

    def finish_prologue(self, lw) -> None:
        """In the entry block, after the body is lowered: set-up the body turned out to need."""

    def epilogue(self, lw, results: list[Val], nret) -> None:
        """The entry function returned `results` (`nret` of them at run time)."""
        lw.exit(self.default_return)

    def exit(self, lw, value) -> None:
        """End the program returning `value`."""
        lw.b.terminate(ir.Exit(value))

    def on_error(self, lw, site) -> None:
        """A runtime error at error site `site` (a register) ends the program."""

    def opaque_zero(self, lw) -> ir.VReg | None:
        """A register holding a 0 the verifier cannot know, or None: the globals map's."""
        return None
