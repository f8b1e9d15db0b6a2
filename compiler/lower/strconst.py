"""Constant strings chosen at run time: values of kind "cstr".

A constant string lives at compile time only: its bytes are in no memory the program
can point at, while a string view is an offset and a length into the packet. So when
which string a variable or an `and`/`or` holds is known only at run time
(`local s = m and "yes" or "no"`, `x or "default"` with x a view of the packet), the
value is a "cstr": tag CSTR, payload the index of the constant in the program's table
of such strings (`intern`). Nothing reads a cstr's bytes: every operation on a value
that may be one lowers once per alternative — each constant as the compile-time string
it is, the value's other kinds (a view, nil, …) as before — with `branch_each` (the
operation ends in branches: `==`, ordering) or `each_value` (it gives values, merged
into variables: `#`, methods, library calls such as `print`). The result is Lua's
because each alternative is the same operation on the very string Lua would have.
"""
from __future__ import annotations

from luabpf.compiler import ir
from luabpf.compiler.lower.values import CSTR, Val, Values

TABLE = ("cstr", "table")          # key of the table in the lowerer's persistent `kinds`


def has(v: Val) -> bool:
    return "cstr" in v.kinds


def intern(lw, data: bytes) -> int:
    """The index of a constant string in the program's table (stable across restarts)."""
    table = lw.kinds.setdefault(TABLE, [])
    if data not in table:
        table.append(data)
    return table.index(data)


def storable(lw, v: Val) -> Val:
    """v as a variable stores it: a constant string becomes a cstr."""
    if v.data is None:
        return v
    i = intern(lw, v.data)
    return Val(CSTR, i, frozenset({"cstr"}), strs=frozenset({i}))


def possible(lw, v: Val) -> frozenset:
    """The indexes of the constants a cstr value may be."""
    return v.strs if v.strs is not None else frozenset(range(len(lw.kinds.get(TABLE, []))))


def stored_kinds(v: Val) -> frozenset:
    """The kinds a variable needs to hold v."""
    return frozenset({"cstr"}) if v.data is not None else v.kinds


def alternatives(lw, v: Val, body) -> None:
    """Call body(alt) in a block of its own for each alternative of v: the value minus its
    cstr kind (when it has others), then each constant of the table. Each body must end
    its block (a jump or a branch) or leave it for the caller's join."""
    b = lw.b
    table = lw.kinds.get(TABLE, [])
    indexes = sorted(possible(lw, v))
    others = v.kinds - {"cstr"}
    if others:
        is_c, not_c = b.block("cstr"), b.block("not_cstr")
        b.branch("eq", v.tag, CSTR, is_c, not_c)
        b.start(not_c)
        body(Val(v.tag, v.payload, others, v.range, v.length, v.data, v.obj))
        b.start(is_c)
    for n, i in enumerate(indexes):
        if n == len(indexes) - 1:
            body(Val.string(table[i]))
            break
        this, rest = b.block("cstr_is"), b.block("cstr_not")
        b.branch("eq", v.payload, i, this, rest)
        b.start(this)
        body(Val.string(table[i]))
        b.start(rest)
    if not indexes:                      # no constant was stored: no cstr can be here
        b.terminate(ir.Exit(0))


def branch_each(lw, vals: list[Val], body) -> None:
    """body(*alts) for each combination of the alternatives of vals; every body ends in
    branches (to the caller's yes/no blocks)."""
    def go(i: int, chosen: list[Val]) -> None:
        if i == len(vals):
            body(*chosen)
        elif has(vals[i]):
            alternatives(lw, vals[i], lambda alt: go(i + 1, chosen + [alt]))
        else:
            go(i + 1, chosen + [vals[i]])
    go(0, [])


def each_value(lw, vals: list[Val], key, fn) -> list[Val]:
    """fn(*alts) -> list[Val] for each combination of the alternatives of vals, merged:
    the values of the operation, in variables. Where the alternatives give different
    numbers of values (`(""):byte(1)` gives none, `("a"):byte(1)` one), or one gives a
    number known only at run time (`Values`), the merge is a `Values` whose count is
    the one of the alternative taken, the values past it nil, as Lua pads them."""
    b = lw.b
    join = b.block("cstr_join")
    results: list = []
    counts: set[int] = set()
    count = b.vreg("alt_count")          # how many values the alternative taken gave
    dynamic = False
    ends: list = []                      # (block ending an alternative, its number of values)

    def one(*alts) -> None:
        nonlocal dynamic
        out = fn(*alts)
        if not b.reachable:              # the operation raised an error on this alternative
            return
        counts.add(len(out))
        if isinstance(out, Values):
            dynamic = True
            b.mov(count, out.count)
        else:
            b.mov(count, len(out))
        for i, v in enumerate(out):
            if i == len(results):
                results.append(lw.new_var((lw._inst_id(), key, "alt", i), "alt",
                                          stored_kinds(v)))
            lw.assign(results[i], v)
        end = b.block("cstr_alt_end")
        b.jump(end)
        ends.append((end, len(out)))

    branch_each(lw, vals, one)
    if not b.terminated:
        b.jump(join)
    for end, n in ends:                  # pad each alternative to the longest with nil
        b.start(end)
        for r in results[n:]:
            lw.assign(r, Val.nil())
        b.jump(join)
    b.start(join)
    merged = [r.read() for r in results]
    return Values(merged, count) if dynamic or len(counts) > 1 else merged


def any_cstr(vals: list[Val]) -> bool:
    return any(has(v) for v in vals)


__all__ = ["has", "any_cstr", "intern", "storable", "stored_kinds", "branch_each", "each_value"]
