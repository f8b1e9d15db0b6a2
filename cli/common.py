"""What every subcommand of the `luabpf` command line shares: the consoles, exit codes,
argument readers, and how a failure is reported.

Exit codes: 0 success, 1 a compile, verify or runtime error, 2 usage. No Python traceback
reaches a user: every failure becomes one located message (set LUABPF_DEBUG=1 to see the
traceback of an internal error); with `--json`, also one JSON line on stdout with its
diagnostics (`emit_failure`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from luabpf.api import LuaRuntimeError
from luabpf.compiler.back.cost import check_figure
from luabpf.compiler.front.diagnostics import CompileError
from luabpf.compiler.lib.events import lua_text
from luabpf.runtime.attach import AttachError
from luabpf.runtime.cpufreq import CpufreqError
from luabpf.runtime.errors import BpfError, PermissionProblem
from luabpf.runtime.load import LoadError
from luabpf.runtime.mapdata import MapDataError, MapFileError, parse_integer
from luabpf.runtime.pins import PinError
from luabpf.runtime.tracefs import TracefsError

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
            from rich.console import Console    # rich costs ~50 ms to import: only when needed
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
        value = parse_integer(text)                      # hex wraps around, as Lua's literals do
    except OverflowError:
        raise UsageError(f"{text} does not fit a 64-bit integer (decimal numbers do not wrap)") from None
    if value is None:
        raise UsageError(f"{text!r} is not an integer, true, false or nil")
    return value


def count_flag(text: str) -> int:
    """argparse type of --max-loop and --budget: a whole number from 1 to 2^63 - 1 (a usage
    error, exit 2, otherwise)."""
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
    return lua_text(v)


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
    if isinstance(e, CompileError):
        return [diagnostic(d.message, d.file, d.line, d.col, d.hint, d.severity)
                for d in e.diagnostics]
    if isinstance(e, LoadError):
        return [diagnostic(f"the kernel verifier rejected the program: {e.message}", e.file,
                           e.line)]
    if isinstance(e, LuaRuntimeError):
        return [diagnostic(e.message, e.file, e.line)]
    if isinstance(e, MapFileError):
        return [diagnostic(e.reason, e.file, e.line)]
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
    return isinstance(e, (AttachError, CpufreqError, MapDataError, PinError, TracefsError))
