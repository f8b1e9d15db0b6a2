"""The `luabpf` command: its argument parser and `main`.

Owns the subcommand table and running a subcommand: `build` (compile, check, call,
inspect, demo), `packets` (test), `run` (run), `pins` (set, ls) and `maps` (map) each
add their own.
A usage error shows the usage of the subcommand it concerns.
"""
from __future__ import annotations

import argparse
import os
import sys

from luabpf import __version__
from luabpf.cli import help, maps, packets, pins, run
from luabpf.cli.build import cmd_call, cmd_check, cmd_compile, cmd_demo, cmd_inspect
from luabpf.compiler.hooks.table import HOOK_NAMES
from luabpf.runtime.mapdata import MapDataError
from luabpf.cli.common import (EXIT_ERROR, EXIT_OK, EXIT_USAGE, ArgumentError, Parser, UsageError,
                               add_cost_flags, diagnostic, emit_failure, err, report, usage_failed)


class _Version(argparse.Action):
    """`--version`: luabpf's version (`luabpf.__version__`, what the package's metadata
    is made from)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print luabpf's version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"luabpf {__version__}")
        parser.exit(EXIT_OK)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="luabpf", description="Kernel Lua: compile Lua to eBPF, "
               "verify it in the running kernel, run it there.")
    p.add_argument("--version", action=_Version)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp):
        sp.add_argument("file", metavar="FILE.lua")
        sp.add_argument("--hook", choices=HOOK_NAMES,
                        default=None,
                        help="what the script's entry points attach to (default: found by name)")
        add_cost_flags(sp)
        sp.add_argument("--loops", choices=["may_goto", "bounded"], default=None,
                        help="how loops are verified: may_goto (kernels 6.9+) or bounded "
                             "back-edges; default: may_goto for compile, what the running "
                             "kernel has for check")

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

    packets.add_commands(sub)
    run.add_commands(sub)
    pins.add_commands(sub)
    maps.add_commands(sub)
    help.add_commands(sub)
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
        if isinstance(e, UsageError) or isinstance(e, MapDataError) and e.usage:
            return usage_failed(args, e)
        if isinstance(e, BrokenPipeError):      # `luabpf test … | head`: the reader left
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return EXIT_ERROR
        return report(e, args)
