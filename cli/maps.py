"""`luabpf map`: read and change a map of a program `luabpf run` keeps running.

Owns what the command does and prints (docs/running.md, "`luabpf map`"); `app` registers
it. `map TARGET NAME ACTION…` opens the run's pins (TARGET: its NAME or pin directory,
as `luabpf set` takes it) and the script's map NAME, and does one of:

    dump            every entry, one `KEY VALUE` line each, by key: the map file format,
                    so `dump > f` and `load f` round-trip (per-CPU maps: the sum, then
                    each CPU's value in a comment)
    get KEY         the value (per-CPU: the sum, then each CPU's)
    set KEY VALUE   store it; prints what it was
    del KEY         delete it (not in an array map: its entries always exist)
    clear           delete every entry (an array map: set each to 0)
    load FILE       store a map file's entries (runtime/mapdata.py reads it)

Keys and values are read and printed in the map's types (runtime/mapdata.py's
`MapTypes`): integers today, written as `luabpf set` takes them. `--json` prints one
object per line instead. Exit codes: 0; 1 for an unknown target or map, a key the map
does not have or cannot have, a full map, a wrong map file; 2 for malformed arguments
(a missing operand, text that is no integer, a missing file).
"""
from __future__ import annotations

import errno

from luabpf.cli.common import EXIT_OK, UsageError, emit_json, lua_repr, out
from luabpf.runtime import pins
from luabpf.runtime.errors import BpfError
from luabpf.runtime.mapdata import MapDataError, lua_sum
from luabpf.runtime.mapview import MapView

ACTIONS = {"dump": [], "get": ["KEY"], "set": ["KEY", "VALUE"], "del": ["KEY"], "clear": [],
           "load": ["FILE"]}


def add_commands(sub) -> None:
    m = sub.add_parser("map", help="read and change a running program's map: luabpf map TARGET "
                                   "NAME dump|get KEY|set KEY VALUE|del KEY|clear|load FILE")
    m.add_argument("target", metavar="TARGET", help="the run's NAME (see `luabpf ls`) or pin directory")
    m.add_argument("map", metavar="NAME", help="the script's name for the map")
    m.add_argument("action", choices=list(ACTIONS), metavar="ACTION",
                   help="dump, get KEY, set KEY VALUE, del KEY, clear or load FILE")
    m.add_argument("operands", nargs="*", metavar="ARG")
    m.add_argument("--json", action="store_true", help="one JSON object per line")
    m.set_defaults(run=cmd_map)


def cmd_map(args) -> int:
    wanted = ACTIONS[args.action]
    if len(args.operands) != len(wanted):
        shape = " ".join([args.action, *wanted])
        raise UsageError(f"{args.action} takes {_count(wanted)}: luabpf map TARGET NAME {shape}")
    with pins.open_running(args.target) as run:        # PinError: cli.report's to show
        view = run.maps.get(args.map)
        if view is None:
            known = ", ".join(sorted(run.maps)) or "none"
            raise pins.PinError(f"{args.target} has no map '{args.map}' (its maps: {known})")
        # MapDataError: cli.app's to show (a usage error when the command line is at fault)
        ACTION_RUNS[args.action](args, view, *args.operands)
    return EXIT_OK


def _count(operands: list[str]) -> str:
    if not operands:
        return "no arguments"
    return " and ".join(operands)


def _per_cpu_note(view: MapView, values: list[int]) -> str:
    """The comment after a per-CPU map's sum: each CPU's value."""
    if not view.per_cpu_map:
        return ""
    return "  # per CPU: " + " ".join(view.types.value_text(v) for v in values)


def _entry_json(view: MapView, k: int, values: list[int]) -> dict:
    row = {"map": view.name, "key": k, "value": lua_sum(values)}
    if view.per_cpu_map:
        row["per_cpu"] = values
    return row


def _dump(args, view: MapView) -> None:
    types = view.types
    for k, values in sorted(view.per_cpu_entries()):
        if args.json:
            emit_json(_entry_json(view, k, values))
        else:
            out.print(f"{types.key_text(k)} {types.value_text(lua_sum(values))}"
                      f"{_per_cpu_note(view, values)}", markup=False)


def _get(args, view: MapView, key_text: str) -> None:
    k = view.types.key_from_text(key_text)
    try:
        values = view.per_cpu(k)
    except KeyError:
        raise MapDataError(f"map '{view.name}' has no key "
                           f"{view.types.key_text(k)}") from None
    if args.json:
        emit_json(_entry_json(view, k, values))
    else:
        out.print(f"{view.types.value_text(lua_sum(values))}{_per_cpu_note(view, values)}",
                  markup=False)


def _set(args, view: MapView, key_text: str, value_text: str) -> None:
    types = view.types
    k, v = types.key_from_text(key_text), types.value_from_text(value_text)
    old = view.get(k)
    try:
        view[k] = v
    except BpfError as e:
        if e.errno != errno.E2BIG:
            raise
        raise MapDataError(types.full(k)) from None
    if args.json:
        emit_json({"event": "set", "map": view.name, "key": k, "value": v, "was": old})
    else:
        out.print(f"{args.target}: {view.name}[{types.key_text(k)}] = {types.value_text(v)} "
                  f"(was {_text_or_nil(types.value_text, old)})", markup=False)


def _del(args, view: MapView, key_text: str) -> None:
    types = view.types
    if types.is_array:
        raise MapDataError(f"'{view.name}' is an array map: its entries cannot be deleted "
                           "(set the entry to 0, or clear the map)")
    k = types.key_from_text(key_text)
    old = view.get(k)
    try:
        del view[k]
    except KeyError:
        raise MapDataError(f"map '{view.name}' has no key "
                           f"{types.key_text(k)}; nothing was deleted") from None
    if args.json:
        emit_json({"event": "deleted", "map": view.name, "key": k, "was": old})
    else:
        out.print(f"{args.target}: {view.name}[{types.key_text(k)}] deleted "
                  f"(was {_text_or_nil(types.value_text, old)})", markup=False)


def _clear(args, view: MapView) -> None:
    n = view.clear()
    if args.json:
        emit_json({"event": "cleared", "map": view.name, "entries": n})
    else:
        done = "set to 0" if view.types.is_array else "deleted"
        out.print(f"{args.target}: {view.name} cleared ({n} entr{'y' if n == 1 else 'ies'} "
                  f"{done})", markup=False)


def _load(args, view: MapView, path: str) -> None:
    n = view.load(path)
    if args.json:
        emit_json({"event": "loaded", "map": view.name, "file": path, "entries": n})
    else:
        out.print(f"{args.target}: {view.name}: {n} entr{'y' if n == 1 else 'ies'} stored from "
                  f"{path}", markup=False)


def _text_or_nil(text, value) -> str:
    return lua_repr(None) if value is None else text(value)


ACTION_RUNS = {"dump": _dump, "get": _get, "set": _set, "del": _del, "clear": _clear,
               "load": _load}
