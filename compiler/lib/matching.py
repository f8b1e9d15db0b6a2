"""`s:match(pattern [, init])` and `s:find(pattern [, init [, plain]])` in kernel Lua.

Owns the Lua-level side of pattern matching: the arguments (a constant
pattern, Lua's rules for `init`), the results Lua returns (captures as
strings or positions, or the whole match; find's start and end first), and
constant subjects (matched at compile time). The matcher itself is
`patterns_codegen`'s; the pattern grammar and reference semantics are
`patterns`'.
"""
from __future__ import annotations

from luabpf.compiler import ir
from luabpf.compiler.lib import patterns, patterns_codegen
from luabpf.compiler.lib.views import ViewSubject, int_arg, length, substring
from luabpf.compiler.lower.values import Val, Values

def escape(pattern: bytes) -> bytes:
    return b"".join(b"%" + bytes([c]) if c in patterns.SPECIALS else bytes([c]) for c in pattern)


def _const_results(result) -> list[Val]:
    if result is None:
        return [Val.nil()]
    out = []
    for r in (result if isinstance(result, tuple) else (result,)):
        out.append(Val.string(r) if isinstance(r, bytes) else Val.int_(r))
    return out


def method_match(lw, s: Val, args: list[Val], node) -> list[Val]:
    """s:match(pattern [, init])."""
    return lower_match(lw, s, args, node, find=False)


def method_find(lw, s: Val, args: list[Val], node) -> list[Val]:
    """s:find(pattern [, init [, plain]])."""
    return lower_match(lw, s, args, node, find=True)


def lower_match(lw, s: Val, args: list[Val], node, find: bool) -> list[Val]:
    name = "find" if find else "match"
    b = lw.b
    if not args or args[0].data is None:
        lw.error(node, f"the pattern of s:{name} must be a constant string in kernel Lua")
        return [Val.nil()]
    pat = args[0].data
    if find and len(args) > 2:
        plain = args[2].const_truth()
        if plain is None:
            lw.error(node, "the 'plain' argument of s:find must be a constant in kernel Lua")
            return [Val.nil()]
        if plain:
            pat = escape(pat)
    try:                                 # a constant subject is matched here, by the reference
        pattern = patterns.parse_pattern(pat, kernel=s.data is None)
    except patterns.PatternError as e:
        lw.error(node, f"bad pattern {args[0].data!r}: {e}")
        return [Val.nil()]
    init = int_arg(lw, args, 1, 1, node, name)     # absent or nil: 1, as luaL_optinteger
    n = length(lw, s)
    if s.data is not None and isinstance(init, int):
        run = patterns.reference_find if find else patterns.reference_match
        return _const_results(run(pattern, s.data, init))
    if s.data is not None:
        lw.error(node, f"s:{name} on a constant string needs a constant init in kernel Lua")
        return [Val.nil()]
    start = _init_offset(lw, init, n)
    outputs = _result_vars(lw, pattern, node, find)
    count = b.vreg("nmatch") if len(outputs) > 1 else None   # a failure is one nil
    matched, failed, done = b.block("matched"), b.block("no_match"), b.block("match_done")
    if start is None:                       # init past the end: fail without matching
        b.jump(failed)
    else:
        too_far = b.block("init_ok")
        if isinstance(start, int) and isinstance(n, int):
            b.jump(failed if start > n else too_far)
        else:
            b.branch("sgt", b.reg(start), n, failed, too_far)
        b.start(too_far)
        res = patterns_codegen.emit_match(lw, pattern, ViewSubject(s), start,
                                          steps=_step_cap(lw, node), span=node.span)
        b.branch("ne", res.ok, 0, matched, failed)
        b.start(matched)
        values = _values(lw, s, res, find)
        for var, v in zip(outputs, values):
            lw.assign(var, v)
        if count is not None:
            b.mov(count, len(outputs))
        b.jump(done)
    b.start(failed)
    lw.assign(outputs[0], Val.nil())
    for var in outputs[1:]:
        lw.assign(var, Val.nil())
    if count is not None:
        b.mov(count, 1)
    b.jump(done)
    b.start(done)
    vals = [v.read() for v in outputs]
    return vals if count is None else Values(vals, count)


def _step_cap(lw, node) -> int | None:
    """The steps this match may take: `--@bound N` on the line before its statement,
    else the hook's default (cost.py, docs/language.md "Cost of a run")."""
    steps = getattr(node, "bound", None)
    if steps is None:
        return None                      # the hook's, or the fitted one (emit_match)
    if steps > patterns_codegen.MAX_STEPS:
        lw.error(node, f"a pattern match takes at most {patterns_codegen.MAX_STEPS:,} steps, "
                       f"not {steps:,}", "state a smaller cap with '--@bound N'")
        return patterns_codegen.MAX_STEPS
    return steps


def _init_offset(lw, init, n):
    """Lua 5.4's posrelatI(init) - 1: the 0-based start, or None if it is past the end."""
    b = lw.b
    if isinstance(init, int):
        if init > 0:
            return init - 1
        if init == 0:
            return 0
        if isinstance(n, int):
            return max(n + init, 0)
    r = b.copy(init, "init")
    pos, nonpos, neg, clamp, done = (b.block("init_pos"), b.block("init_np"), b.block("init_neg"),
                                     b.block("init_clamp"), b.block("init_done"))
    b.branch("sgt", r, 0, pos, nonpos)
    b.start(pos)
    b.emit(ir.Bin("sub", r, r, 1))
    b.jump(done)
    b.start(nonpos)
    b.emit(ir.Bin("add", r, r, b.small(n) if isinstance(n, int) else n))
    b.branch("slt", r, 0, clamp, neg)
    b.start(clamp)
    b.mov(r, 0)
    b.jump(done)
    b.start(neg)
    b.jump(done)
    b.start(done)
    return r


def _result_vars(lw, pattern, node, find: bool):
    kinds = []
    if find:
        kinds += ["int", "int"]
    capture_kinds = [("int" if c == "position" else "str") for c in _capture_kinds(pattern)]
    if capture_kinds:
        kinds += capture_kinds
    elif not find:
        kinds.append("str")
    return [lw.new_var((lw._inst_id(), id(node), "match", i), f"match{i}", frozenset({"nil", k}))
            for i, k in enumerate(kinds)]


def _capture_kinds(pattern) -> list[str]:
    return list(pattern.captures)


def _values(lw, s: Val, res, find: bool) -> list[Val]:
    b = lw.b
    out = []
    if find:
        out.append(Val.int_(b.bin("add", res.start, 1)))
        out.append(Val.int_(res.end))
    if res.captures:
        for c in res.captures:
            if c.kind == "position":
                out.append(Val.int_(c.position))
            else:
                out.append(substring(lw, s, c.start, b.bin("sub", c.end, c.start)))
    elif not find:
        out.append(substring(lw, s, res.start, b.bin("sub", res.end, res.start)))
    return out
