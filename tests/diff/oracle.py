"""Lua 5.4 (lupa) as the semantic oracle of the differential tests.

Owns `run_lua(source, name, *args)`: runs the chunk in a fresh Lua 5.4 state,
calls global function `name`, and gives back the result in run_function's
shape (None for no value or nil, int, bool, a tuple for several values), or
raises `LuaOracleError` with the Lua line and message of a runtime error.
Also `outcome(...)`/`kernel_outcome(...)`, which turn either side's result or
error into one comparable value, and `kernel_lua(...)`, the one place where
kernel Lua's text becomes Lua 5.4's (`/` on integers is floor division in
kernel Lua). Does not own generation (strategies.py) or the kernel side.
"""
from __future__ import annotations

import re
from collections import Counter

from lupa import lua54

CHUNK = "luabpf"
# Lua's own bound on a run, in VM instructions: generated programs are short,
# so reaching it means a generator bug (an endless loop), not a result.
INSTRUCTION_LIMIT = 50_000_000

# cases judged in this session, by kind; tests/diff/conftest.py prints it
TALLY: Counter = Counter()

_ERROR_RE = re.compile(rf"^{CHUNK}:(\d+): (.*)$", re.S)


class LuaOracleError(Exception):
    """A Lua runtime error: `.line` (None when Lua gave no position) and `.message`."""

    def __init__(self, line: int | None, message: str):
        self.line, self.message = line, message
        super().__init__(f"{CHUNK}:{line}: {message}")


class OracleBug(Exception):
    """The oracle cannot judge this case (bad generated text, floats, a runaway loop)."""


def kernel_lua(source: str) -> str:
    """Lua 5.4 text with kernel Lua's meaning: `/` (integer floor division) becomes `//`."""
    return re.sub(r"(?<!/)/(?!/)", "//", source)


def _convert(value):
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    raise OracleBug(f"Lua returned a non-integer value {value!r} ({type(value).__name__})")


def run_lua(source: str, name: str, *args):
    """Lua 5.4's answer for `name(*args)` in `source` (already Lua 5.4 text)."""
    lua = lua54.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    g = lua.globals()
    chunk = g.load(source, "=" + CHUNK)
    if isinstance(chunk, tuple):
        raise OracleBug(f"Lua 5.4 does not accept the text: {chunk[1]}")
    lua.execute(f"debug.sethook(function() error('oracle: instruction limit') end, '', "
                f"{INSTRUCTION_LIMIT})")
    try:
        chunk()
        result = g[name](*args)
    except lua54.LuaError as exc:
        text = str(exc).split("\nstack traceback:", 1)[0]
        if "oracle: instruction limit" in text:
            raise OracleBug("the Lua run did not finish (a generated loop does not end)") from None
        m = _ERROR_RE.match(text)
        if m:
            raise LuaOracleError(int(m.group(1)), m.group(2)) from None
        raise LuaOracleError(None, text) from None
    if isinstance(result, tuple):
        return tuple(_convert(v) for v in result)
    return _convert(result)


def outcome(source: str, name: str, *args):
    """('ok', value) or ('error', line, message) from Lua 5.4 for kernel-Lua text."""
    try:
        return ("ok", run_lua(kernel_lua(source), name, *args))
    except LuaOracleError as exc:
        return ("error", exc.line, exc.message)


def same_value(a, b) -> bool:
    """Equality that tells True from 1 and False from 0, element by element."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        return (isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b)
                and all(same_value(x, y) for x, y in zip(a, b)))
    return type(a) is type(b) and a == b
