"""The `luabpf` command line (DESIGN §4).

Owns argument parsing, what each subcommand prints, and the exit codes:
0 success, 1 a compile, verify or runtime error, 2 usage. No Python
traceback reaches a user: every failure becomes one located message
(set LUABPF_DEBUG=1 to see the traceback of an internal error); with
`--json`, also one JSON line on stdout with its diagnostics (`emit_failure`).
A usage error shows the usage of the subcommand it concerns.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class LazyConsole:
    """A rich Console made on first need: plain text (markup=False) is written directly,
    so commands that print a line or two do not pay for importing rich (~50 ms, a sixth
    of `luabpf check`'s budget)."""

    def __init__(self, stderr: bool = False):
        self.stderr = stderr
        self._real = None

    @property
    def real(self):
        if self._real is None:
            from rich.console import Console
            self._real = Console(stderr=self.stderr, highlight=False, soft_wrap=True)
        return self._real

    @property
    def is_terminal(self) -> bool:
        return self.real.is_terminal

    def print(self, *objects, markup: bool = True, end: str = "\n", **kw) -> None:
        if self._real is None and not markup and not kw and all(isinstance(o, str) for o in objects):
            stream = sys.stderr if self.stderr else sys.stdout
            stream.write(" ".join(objects) + end)
            stream.flush()
            return
        self.real.print(*objects, markup=markup, end=end, **kw)


out = LazyConsole()
err = LazyConsole(stderr=True)


class UsageError(Exception):
    pass


class ArgumentError(Exception):
    """argparse found the command line malformed: `.parser` is the (sub)command's parser,
    whose usage is shown; str() is argparse's message."""

    def __init__(self, parser: argparse.ArgumentParser, message: str):
        super().__init__(message)
        self.parser = parser


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises ArgumentError instead of exiting, so `main` reports
    it in the subcommand's own words (and as JSON with --json); subparsers are made of
    this class too."""

    def error(self, message: str):
        raise ArgumentError(self, message)


def version() -> str:
    """luabpf's version, as the installed package's metadata says."""
    from importlib.metadata import PackageNotFoundError, version as _version
    try:
        return _version("luabpf")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _Version(argparse.Action):
    """`--version`: the version is looked up only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print luabpf's version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"luabpf {version()}")
        parser.exit(EXIT_OK)


def read_source(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read it ({e})") from None


def parse_value(text: str):
    """A command-line argument as a Lua value: an integer, true, false or nil."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "nil":
        return None
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(f"{text!r} is not an integer, true, false or nil") from None
    if lowered.lstrip("+-").startswith("0x"):            # hex wraps around, as Lua's literals do
        return (value + (1 << 63)) % (1 << 64) - (1 << 63)
    if not -(1 << 63) <= value < (1 << 63):
        raise UsageError(f"{text} does not fit a 64-bit integer (decimal numbers do not wrap)")
    return value


def count_flag(text: str) -> int:
    """argparse type of --max-loop and --budget: a whole number from 1 to 2^63 - 1 (a usage
    error, exit 2, otherwise)."""
    from luabpf.compiler.cost import check_figure
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    problem = check_figure(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def add_cost_flags(sp) -> None:
    """--max-loop and --budget, for every command that compiles (docs/language.md, "Cost")."""
    sp.add_argument("--max-loop", type=count_flag, default=None, metavar="N",
                    help="iteration bound of loops without --@bound (default: the hook's)")
    sp.add_argument("--budget", type=count_flag, default=None, metavar="N",
                    help="most instructions one run may execute in the worst case "
                         "(default: the hook's)")


def emit_json(obj) -> None:
    """One JSON line on stdout, flushed (a reader may be waiting for it)."""
    print(json.dumps(obj), flush=True)


def lua_repr(v) -> str:
    """A value as Lua's tostring writes it."""
    from luabpf.compiler.events import lua_text
    return lua_text(v)


# ---- subcommands ---------------------------------------------------------------

def cmd_compile(args) -> int:
    from luabpf.api import compile_file
    text = read_source(args.file)
    programs = compile_file(text, args.file, hook=args.hook, max_loop=args.max_loop,
                            loops=args.loops, budget=args.budget)
    if args.output:
        from luabpf.compiler.objfile import write_object
        data = write_object([prog.compiled for _, prog in programs])
        try:
            with open(args.output, "wb") as f:
                f.write(data)
        except OSError as e:
            raise UsageError(f"{args.output}: cannot write it ({e.strerror})") from None
        if not args.asm:
            out.print(f"{args.output}: {len(programs)} program{'s' if len(programs) != 1 else ''} "
                      f"({', '.join(name for name, _ in programs)}), {len(data):,} bytes",
                      markup=False)
            return EXIT_OK
    if args.asm:
        for name, prog in programs:
            out.print(f"[bold]; program {name}[/bold] ({prog.insn_count} instructions)")
            out.print(prog.asm(), markup=False)
            out.print()
    else:
        for name, prog in programs:
            out.print(f"{args.file}: {name}: {prog.insn_count} instructions, "
                      f"{prog.compiled.stack_size} bytes of stack, {worst_case_words(prog)}",
                      markup=False)
    return EXIT_OK


def cmd_inspect(args) -> int:
    from luabpf.compiler.objread import DAMAGE, ObjectError, describe, disassemble, read_object
    try:
        with open(args.object, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UsageError(f"{args.object}: cannot read it ({e.strerror})") from None
    try:
        info = read_object(raw)
    except ObjectError as e:
        err.print(f"luabpf: {args.object}: {e}", markup=False)
        return EXIT_ERROR
    out.print(describe(info, args.object), markup=False)
    if args.asm:
        for p in info.programs:
            try:
                listing = disassemble(p)
            except DAMAGE as e:               # code that does not decode
                err.print(f"luabpf: {args.object}: program {p.name}: {e}", markup=False)
                return EXIT_ERROR
            out.print(f"\n; program {p.name} (section {p.section})", markup=False)
            out.print(listing, markup=False)
    return EXIT_OK


def cmd_check(args) -> int:
    from luabpf.api import compile_file
    text = read_source(args.file)
    programs = compile_file(text, args.file, hook=args.hook, max_loop=args.max_loop,
                            loops=args.loops, budget=args.budget)
    rows = []
    for name, prog in programs:
        with prog.load():
            est = prog.compiled.estimate
            rows.append({"program": name, "instructions": prog.insn_count, "verified": True,
                         "worst_case": est.total, "worst_case_budgeted": est.held,
                         "budget": prog.compiled.budget})
    if args.json:
        print(json.dumps(rows))
    else:
        for (name, prog), r in zip(programs, rows):
            out.print(f"{args.file}: {r['program']}: verified by the kernel "
                      f"({r['instructions']} instructions, {worst_case_words(prog)})", markup=False)
    return EXIT_OK


def worst_case_words(prog) -> str:
    """The worst-case estimate as check and compile print it."""
    est = prog.compiled.estimate
    words = f"worst case {est.held:,} of a budget of {prog.compiled.budget:,} per run"
    if est.total != est.held:
        words += f"; {est.total:,} counting luabpf's loops over string bytes at their worst"
    return words


def cmd_call(args) -> int:
    """Call the function in the kernel; what it prints comes first (on stderr as
    `file.lua:LINE: …`, or JSON lines with --json), then what it returns."""
    from luabpf.api import compile_function
    from luabpf.runtime.call import arg_kind
    text = read_source(args.file)
    values = [parse_value(a) for a in args.args]
    prog = compile_function(text, args.function, tuple(arg_kind(v) for v in values), args.file,
                            max_loop=args.max_loop, budget=args.budget)
    with prog.load() as loaded:
        try:
            result = loaded.call(*values)
        finally:
            stream = loaded.events()
            for event in stream.poll(0) if stream is not None else []:
                if args.json:
                    print(json.dumps(event.as_json()))
                else:
                    err.print(event.render(), markup=False)
    results = list(result) if isinstance(result, tuple) else [result]
    if args.json:
        print(json.dumps(results))
    else:
        print("\t".join(lua_repr(v) for v in results))
    return EXIT_OK


def cmd_demo(args) -> int:
    from luabpf.demo import demo
    return demo(out.real)


# ---- main -------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="luabpf", description="Kernel Lua: compile Lua to eBPF, "
               "verify it in the running kernel, run it there.")
    p.add_argument("--version", action=_Version)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp):
        sp.add_argument("file", metavar="FILE.lua")
        sp.add_argument("--hook", choices=["xdp", "tc", "cpufreq", "tracepoint", "function"],
                        default=None,
                        help="what the script's entry points attach to (default: found by name)")
        add_cost_flags(sp)
        sp.add_argument("--loops", choices=["may_goto", "bounded"], default=None,
                        help="how loops are verified: may_goto (kernels 6.9+) or bounded "
                             "back-edges; default: what the running kernel has")

    c = sub.add_parser("compile", help="compile to BPF; --asm prints the assembly with Lua lines")
    common(c)
    c.add_argument("-o", "--output", metavar="OUT.o")
    c.add_argument("--asm", action="store_true")
    c.set_defaults(run=cmd_compile)

    k = sub.add_parser("check", help="compile and pass the kernel verifier, attach nothing")
    common(k)
    k.add_argument("--json", action="store_true")
    k.set_defaults(run=cmd_check)

    f = sub.add_parser("call", help="call a Lua function in the kernel: luabpf call FILE NAME ARGS…")
    f.add_argument("file", metavar="FILE.lua")
    f.add_argument("function")
    f.add_argument("args", nargs="*", metavar="ARG")
    add_cost_flags(f)
    f.add_argument("--json", action="store_true")
    f.set_defaults(run=cmd_call)

    i = sub.add_parser("inspect", help="what is in a BPF object file: programs, maps, Lua lines")
    i.add_argument("object", metavar="OUT.o")
    i.add_argument("--asm", action="store_true", help="also the instructions, with source lines")
    i.set_defaults(run=cmd_inspect)

    d = sub.add_parser("demo", help="the built-in demonstration, in the kernel")
    d.set_defaults(run=cmd_demo)

    from luabpf.cli_packets import _usage_here, add_commands as add_packet_commands   # test
    from luabpf.cli_pins import add_commands as add_pins_commands                  # set, ls
    from luabpf.cli_run import add_commands as add_run_commands                    # run
    add_packet_commands(sub)
    add_run_commands(sub, _usage_here)
    add_pins_commands(sub, _usage_here)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        command = _subparser(parser, args)
        if extra:
            command.error(f"unrecognized arguments: {' '.join(extra)}")
    except ArgumentError as e:
        e.parser.print_usage(sys.stderr)
        err.print(f"{e.parser.prog}: error: {e}", markup=False)
        if "--json" in argv and "--json" in e.parser._option_string_actions:
            emit_failure(EXIT_USAGE, [diagnostic(str(e), hint=e.parser.format_usage().strip())])
        return EXIT_USAGE
    return run_command(args)


def _subparser(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The parser of the subcommand given (its usage is the one to show)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(getattr(args, "command", None), parser)
    return parser


def run_command(args) -> int:
    """Run the subcommand; every failure becomes one message and its exit code."""
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return EXIT_ERROR
    except Exception as e:  # every failure a user can cause becomes one message
        if _is_usage_error(e):
            return usage_failed(args, e)
        return report(e, args)


def _is_usage_error(e: Exception) -> bool:
    """A UsageError of this module, also when it runs as `python -m luabpf.cli` (then
    the subcommands raise luabpf.cli's, another class than __main__'s)."""
    import luabpf.cli as canonical
    return isinstance(e, (UsageError, canonical.UsageError))


def usage_failed(args, e: Exception) -> int:
    err.print(f"luabpf: {e}", markup=False)
    if getattr(args, "json", False):
        emit_failure(EXIT_USAGE, [diagnostic(str(e))])
    return EXIT_USAGE


def diagnostic(message: str, file: str | None = None, line: int | None = None,
               column: int | None = None, hint: str | None = None,
               severity: str = "error") -> dict:
    """One diagnostic as `--json` prints it."""
    return {"file": file, "line": line, "column": column, "message": message, "hint": hint,
            "severity": severity}


def emit_failure(code: int, diagnostics: list[dict]) -> None:
    """`--json`'s failure line on stdout: {"event": "error", "exit": CODE, "diagnostics": […]}."""
    emit_json({"event": "error", "exit": code, "diagnostics": diagnostics})


def diagnostics_of(e: Exception, file: str | None) -> list[dict]:
    """The diagnostics of a failure, located where the failure knows its place."""
    from luabpf.api import LuaRuntimeError
    from luabpf.compiler.diagnostics import CompileError
    from luabpf.runtime.load import LoadError
    if isinstance(e, CompileError):
        return [diagnostic(d.message, d.file, d.line, d.col, d.hint, d.severity)
                for d in e.diagnostics]
    if isinstance(e, LoadError):
        return [diagnostic(f"the kernel verifier rejected the program: {e.message}", e.file,
                           e.line)]
    if isinstance(e, LuaRuntimeError):
        return [diagnostic(e.message, e.file, e.line)]
    return [diagnostic(_message(e), file)]


def report(e: Exception, args=None) -> int:
    """Print a failure (and with --json, its diagnostics on stdout); EXIT_ERROR."""
    text = _text(e)
    err.print(text, markup=False)
    if getattr(args, "json", False):
        emit_failure(EXIT_ERROR, diagnostics_of(e, getattr(args, "file", None)))
    return EXIT_ERROR


def _message(e: Exception) -> str:
    """A failure that is not located in the script: its one sentence."""
    return _text(e).removeprefix("luabpf: ")


def _text(e: Exception) -> str:
    from luabpf.api import LuaRuntimeError
    from luabpf.compiler.diagnostics import CompileError
    from luabpf.runtime.errors import BpfError, PermissionProblem
    from luabpf.runtime.load import LoadError
    if isinstance(e, CompileError):
        return e.render()
    if isinstance(e, (LoadError, LuaRuntimeError)):
        return f"{e}"
    if isinstance(e, PermissionProblem) or _one_sentence(e):
        return f"luabpf: {e}"
    if isinstance(e, BpfError):
        return f"luabpf: the kernel refused: {e}"
    if os.environ.get("LUABPF_DEBUG"):
        raise e
    return (f"luabpf: internal error: {type(e).__name__}: {e} "
            "(this is a bug in luabpf; LUABPF_DEBUG=1 shows where)")


def _one_sentence(e: Exception) -> bool:
    """The runtime's errors whose text is one sentence for the user."""
    from luabpf.runtime.attach import AttachError
    from luabpf.runtime.cpufreq import CpufreqError
    from luabpf.runtime.pins import PinError
    from luabpf.runtime.tracefs import TracefsError
    return isinstance(e, (AttachError, CpufreqError, PinError, TracefsError))


if __name__ == "__main__":
    sys.exit(main())
