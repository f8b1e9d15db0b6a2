"""`luabpf set` and `luabpf ls`: what `luabpf run` keeps running, seen from outside.

Owns what these commands do and print (docs/running.md, "`luabpf set`", "`luabpf ls`"); `app` registers them. Both work
on the pins a run keeps under /sys/fs/bpf/luabpf/NAME/ (`runtime/pins.py`).

`set TARGET NAME=VALUE…` changes globals of a running program (TARGET: its NAME or
its pin directory); every assignment is checked (name, kind, range) before any is
written. `ls` lists what luabpf has running, and the stale pins of runs that were
killed; `ls --prune` removes those first. Exit codes: 0; 1 for an unknown target or
global, a value of the wrong kind, or pins this process may not read; 2 for malformed
arguments.
"""
from __future__ import annotations


from luabpf.cli.common import EXIT_ERROR, EXIT_OK, UsageError, emit_json, err, lua_repr, out
from luabpf.cli.common import parse_value
from luabpf.runtime import pins
from luabpf.runtime.hooks import RUNTIME_HOOKS


def add_commands(sub) -> None:
    s = sub.add_parser("set", help="change globals of a running program: luabpf set TARGET NAME=VALUE…")
    s.add_argument("target", metavar="TARGET", help="the run's NAME (see `luabpf ls`) or pin directory")
    s.add_argument("assignments", nargs="+", metavar="NAME=VALUE")
    s.set_defaults(run=cmd_set)

    ls = sub.add_parser("ls", help="what luabpf has running")
    ls.add_argument("--json", action="store_true", help="one JSON object per run")
    ls.add_argument("--prune", action="store_true",
                    help="first remove the pins of stale runs (their process is gone)")
    ls.set_defaults(run=cmd_ls)


def _assignment(text: str) -> tuple[str, object]:
    name, eq, value = text.partition("=")
    if not eq or not name.strip():
        raise UsageError(f"{text!r}: write NAME=VALUE (an integer, true or false)")
    parsed = parse_value(value)
    if parsed is None:
        raise UsageError(f"{text!r}: a global cannot be set to nil")
    return name.strip(), parsed


def cmd_set(args) -> int:
    assignments = [_assignment(a) for a in args.assignments]
    try:
        with pins.open_running(args.target) as run:
            g = run.state.globals
            for name, _ in assignments:                 # all or nothing: check before writing
                if name not in g.layout:
                    known = ", ".join(sorted(g.layout)) or "none"
                    raise pins.PinError(f"{args.target} has no global '{name}' (its globals: {known})")
            for name, value in assignments:
                kind = g.layout[name]["kind"]
                if (kind == "bool") != isinstance(value, bool):
                    want = "booleans" if kind == "bool" else "integers"
                    raise pins.PinError(f"global '{name}' holds {want}; {lua_repr(value)} is not one")
            for name, value in assignments:
                old = g[name]
                g[name] = value
                out.print(f"{args.target}: {name} = {lua_repr(value)} (was {lua_repr(old)})",
                          markup=False)
    except pins.PinError as e:
        err.print(f"luabpf: {e}", markup=False)
        return EXIT_ERROR
    return EXIT_OK


def cmd_ls(args) -> int:
    pruned = pins.clean_stale() if args.prune else []        # PinError: cli.report's
    runs = pins.list_running()
    for run in pruned:
        if args.json:
            emit_json({"event": "pruned", "name": run.name, "path": run.path, "pid": run.pid})
        else:
            out.print(f"removed the pins of {run.name} (pid {run.pid} is gone)", markup=False)
    rows = []
    for r in runs:
        row = r.as_json()
        row["globals"] = _globals_of(r) if r.alive else {}
        rows.append(row)
    if args.json:
        for row in rows:
            emit_json(row)
        return EXIT_OK
    if not rows:
        if not pruned:
            out.print("nothing is running", markup=False)
        return EXIT_OK
    from rich.table import Table    # rich costs ~50 ms to import: only for the table
    table = Table(show_edge=False)
    for col in ("name", "pid", "state", "file", "attached", "globals", "maps"):
        table.add_column(col)
    for row in rows:
        where = _where(row["attach"] or {})
        table.add_row(row["name"], str(row["pid"]), "running" if row["alive"] else "stale",
                      row["file"], where,
                      " ".join(f"{k}={lua_repr(v)}" for k, v in row["globals"].items()),
                      " ".join(row["maps"]))
    out.print(table)
    stale = sum(1 for row in rows if not row["alive"])
    if stale:
        out.print(f"{stale} stale run{'s' if stale != 1 else ''} (the process is gone): "
                  "`luabpf ls --prune` removes their pins", markup=False)
    return EXIT_OK


def _where(attach: dict) -> str:
    """Where a run is attached, from its pinned attach info: "xdp on eth0", "cpufreq
    every 20 ms on 2 CPUs", "tracepoint sched:sched_switch"."""
    hook = RUNTIME_HOOKS.get(attach.get("hook"), RUNTIME_HOOKS["tracepoint"])
    return hook.where(attach)


def _globals_of(run) -> dict:
    try:
        with pins.OpenedRun(run.path) as opened:
            return dict(opened.state.globals)
    except (OSError, pins.PinError):
        return {}
