"""Calling a function-hook program: Lua values in, Lua values out.

Owns the conversion between Python values and the function hook's context
(`compiler/hooks/function.py`: status, result count, the opaque zero, then a (tag, payload)
pair per argument and per result), and `LuaRuntimeError`, the Lua error a call
raises where Lua would. `LoadedProgram.call` and `api.run_function` use it.
"""
from __future__ import annotations

import struct

from luabpf.compiler.hooks.function import ARGS_OFF, SLOT, STATUS_OFF, ctx_size, results_off
from luabpf.compiler.lower.values import FALSE, INT, NIL, TRUE

PAIR = struct.Struct("<qq")


class LuaRuntimeError(Exception):
    """A Lua runtime error inside the kernel program: `.file`, `.line`, `.message`."""

    def __init__(self, file: str, line: int, message: str):
        self.file, self.line, self.message = file, line, message
        super().__init__(f"{file}:{line}: {message}")


def arg_kind(value) -> str:
    """'nil', 'bool' or 'int': the kind a function-hook argument is compiled for."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 63):
            raise ValueError(f"{value} does not fit a 64-bit Lua integer")
        return "int"
    raise TypeError(f"kernel Lua functions take integers, booleans or nil, not {type(value).__name__}")


def _encode(value) -> bytes:
    kind = arg_kind(value)
    if kind == "nil":
        return PAIR.pack(NIL, 0)
    if kind == "bool":
        return PAIR.pack(TRUE if value else FALSE, 0)
    return PAIR.pack(INT, value)


def _decode(tag: int, payload: int):
    if tag == NIL:
        return None
    if tag in (FALSE, TRUE):
        return tag == TRUE
    return payload


def call(loaded, args: tuple):
    """Run `loaded` (a LoadedProgram of the function hook) once on `args`: None, a value,
    or a tuple of values, as Lua 5.4 returns them; LuaRuntimeError where Lua raises."""
    compiled = loaded.compiled
    hook = compiled.hook
    kinds = tuple(arg_kind(a) for a in args)
    if kinds != tuple(hook.arg_kinds):
        raise TypeError(f"this program was compiled for arguments ({', '.join(hook.arg_kinds)}), "
                        f"not ({', '.join(kinds)})")
    ctx = bytearray(ctx_size(len(args), compiled.nresults))
    struct.pack_into("<q", ctx, STATUS_OFF, -1)
    for i, a in enumerate(args):
        ctx[ARGS_OFF + SLOT * i: ARGS_OFF + SLOT * (i + 1)] = _encode(a)
    out = loaded.run_ctx(bytes(ctx))
    status, nret = PAIR.unpack_from(out, STATUS_OFF)
    if status > 0:
        site = compiled.site(status - 1)
        message = site.message
        if any(p.error_site == status - 1 for p in compiled.prints):
            stream = loaded.events()          # the message's values came as an event
            message = (stream.error_message(status - 1) if stream is not None else None) \
                or message
        raise LuaRuntimeError(compiled.source.filename, site.line, message)
    if status < 0:
        raise RuntimeError("the kernel program did not run to its end (no status written)")
    first = results_off(len(args))
    values = [_decode(*PAIR.unpack_from(out, first + SLOT * i)) for i in range(nret)]
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)
