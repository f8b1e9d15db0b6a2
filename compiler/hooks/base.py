"""What every hook record answers: the common base of `packet`, `cpufreq`, `tracepoint` and
`function`'s records (ply's providers are the model).

A hook is one class. Of a script, the class says (classmethods) which functions are the
hook's entry points (`entries`), which hook of a family the script is for (`chosen`: xdp
or tc by the verdict constants it uses), and makes a record per program (`records`: a
filter one, a policy two, a tracepoint script one per event, a function script one per
function; `shares_state`: whether those programs share maps and globals). A record (an
instance) is one entry function attached to one kernel hook. It says what the pipeline
asks of it, each with an explicit default here rather than probed for:
- the entry function's name (`entry`), the parameters it may take (`params`, None: any)
  and what it may return (`returns`, for errors);
- the program: `prog_type`, `prog_flags`, `expected_attach_type` (compiler/bpf/uapi.py's
  numbers), `section` (libbpf's name for it in an object file) and `label` (how luabpf
  names the program: `xdp/filter`, `function/gcd`);
- its verdicts: `default_return` (what a failed run returns), `verdict_names` (by number;
  empty: not a verdict-returning hook) and whether it counts them (`count_verdicts`);
- whether the errors map counts its runtime errors (`count_errors`);
- what one run may cost (docs/language.md, "Cost of a run"; back/cost.py holds programs
  to it): `loop_bound` (a loop without `--@bound`), `pattern_steps` (a pattern match
  without one) and `budget` (instructions one run may execute in the worst case), each a
  default that `--max-loop`, the fitted step cap and `--budget` override; the defaults
  here are a function's, run once when asked (a BPF function has its caller's figures:
  `program_hook`);
- how print reads bytes of the packet (`load_bytes`: the helper that copies them out;
  None: the hook has no packet);
- the code it wraps around the entry's body while lowering: `prologue` (the context as
  Lua arguments), `finish_prologue` (set-up in the entry block, once the body is known),
  `epilogue` (the entry's results as the hook's answer), `exit`, `on_error` and
  `opaque_zero` (a zero the verifier cannot know, or None for the globals map's).

A record holds what lowering one program needs (the context register); what compiling
produces (instructions, result counts) is the `CompiledProgram`'s, never the record's.
`table` names the hooks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from luabpf.compiler import ir
from luabpf.compiler.bpf.helpers import Helper
from luabpf.compiler.front import ast
from luabpf.compiler.front.diagnostics import CompileError, Diagnostic
from luabpf.compiler.front.source import Source, Span
from luabpf.compiler.lower.values import Val


@dataclass(frozen=True)
class Environment:
    """What making a hook's records may ask of the world outside the compiler.
    trace_fields(category, event): the event's fields (tracepoint.TraceField by name),
    raising `no_such_event` when there is no such event; None: every event has none."""
    trace_fields: Callable[[str, str], dict] | None = None
    no_such_event: type = LookupError
    count_verdicts: bool = False          # packet filters count their verdicts

    def fields_of(self, category: str, event: str) -> dict:
        return self.trace_fields(category, event) if self.trace_fields is not None else {}


class Hook:
    """The defaults of a hook; each hook overrides what differs."""
    name: str = ""
    missing: str = ""                     # the error when a script has none of its entries
    shares_state: bool = True             # one script's programs share maps and globals
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
    load_bytes: Helper | None = None
    loop_bound: int = 1_000_000
    pattern_steps: int = 1_000_000
    budget: int = 100_000_000

    # ---- the hook, of a script --------------------------------------------------

    @classmethod
    def entries(cls, chunk: ast.Chunk) -> list:
        """The statements of `chunk` that define this hook's entry functions."""
        return []

    @classmethod
    def chosen(cls, chunk: ast.Chunk, source: Source) -> str:
        """The name of the hook a script with these entries is for."""
        return cls.name

    @classmethod
    def records(cls, chunk: ast.Chunk, source: Source, env: Environment) -> tuple[ast.Chunk, list]:
        """The chunk to compile and a record per program; a CompileError when the script
        defines no entry function of this hook."""
        if not cls.entries(chunk):
            raise CompileError([Diagnostic(cls.missing, Span(source.filename, 1, 1, 1, 2))], source)
        return cls.plan(chunk, source, env)

    @classmethod
    def plan(cls, chunk: ast.Chunk, source: Source, env: Environment) -> tuple[ast.Chunk, list]:
        """`records` once the script is known to have an entry function."""
        raise NotImplementedError(f"the {cls.name} hook makes no records of a script")

    # ---- one program ------------------------------------------------------------

    @property
    def program_hook(self) -> "Hook":
        """The record of the program this code is compiled into: this one; a BPF
        function's (calls.SubHook) is its calling program's."""
        return self

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


def top_functions(chunk: ast.Chunk, path: list[str]) -> list:
    """The top-level `function a.b.c` statements of `chunk` whose path is `path`."""
    return [st for st in chunk.body.stmts if isinstance(st, ast.FunctionDecl) and st.path == path]


def is_tracepoint(st) -> bool:
    """`function tracepoint.CATEGORY.EVENT(...)`."""
    return isinstance(st, ast.FunctionDecl) and len(st.path) == 3 and st.path[0] == "tracepoint"


def is_plain(st) -> bool:
    """`function f` or `local function f`: a top-level function a caller can name."""
    return (isinstance(st, ast.FunctionDecl) and len(st.path) == 1 and not st.method) \
        or isinstance(st, ast.LocalFunction)


def name_of(st) -> str:
    """The name a top-level function statement defines (`f`, `tracepoint.sched.x`)."""
    return st.name if isinstance(st, ast.LocalFunction) else ".".join(st.path)
