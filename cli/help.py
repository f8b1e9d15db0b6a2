"""`luabpf help builtins`: the built-in library of kernel Lua, from its table.

Owns printing the library table (`compiler/lib/table.py`) for people: grouped, one
built-in a line (signature, the hooks that may use it, what it does), or with
`--markdown` as docs/builtins.md, the generated page (a unit test keeps the two
equal). `app` registers the command.
"""
from __future__ import annotations

import sys

from luabpf.cli.common import EXIT_OK
from luabpf.compiler.lib import table

TOPICS = {"builtins": (table.as_text, table.as_markdown)}


def add_commands(sub) -> None:
    h = sub.add_parser("help", help="reference: `luabpf help builtins` lists the built-in library")
    h.add_argument("topic", choices=sorted(TOPICS))
    h.add_argument("--markdown", action="store_true",
                   help="print it as docs/builtins.md (the page is generated this way)")
    h.set_defaults(run=cmd_help)


def cmd_help(args) -> int:
    text, markdown = TOPICS[args.topic]
    sys.stdout.write((markdown if args.markdown else text)())
    return EXIT_OK
