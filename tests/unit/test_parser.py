"""Parser tests: AST-to-tuple round trips, literals, spans, `--@bound`, syntax errors.

Lua 5.4 itself (lupa) is the oracle for string escapes and operator precedence.
"""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from luabpf.compiler.front import ast
from luabpf.compiler.front.diagnostics import CompileError
from luabpf.compiler.front.luaint import BINARY, LuaArithError, bnot, neg
from luabpf.compiler.front.parser import parse

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from paper_figures import FIGURE1, FIGURE2  # noqa: E402
PAPER = ROOT.parent / "shared" / "seeds" / "scriptable-os-paper.txt"



def r(n):
    """A compact tuple rendering of an AST (pycparser style)."""
    if isinstance(n, list):
        return [r(x) for x in n]
    match n:
        case None | ast.Nil():
            return None
        case ast.Bool(value=v) | ast.Int(value=v) | ast.String(value=v):
            return v
        case ast.Float(text=t):
            return ("float", t)
        case ast.Vararg():
            return "..."
        case ast.Name(name=name):
            return name
        case ast.Index(obj=o, key=k, dot=True):
            return (".", r(o), k.value.decode())
        case ast.Index(obj=o, key=k):
            return ("[]", r(o), r(k))
        case ast.Call(func=f, args=a):
            return ("call", r(f), *r(a))
        case ast.MethodCall(obj=o, method=m, args=a):
            return (":", r(o), m, *r(a))
        case ast.BinOp(op=op, left=a, right=b):
            return (op, r(a), r(b))
        case ast.UnOp(op=op, operand=a):
            return (op, r(a))
        case ast.Paren(expr=e):
            return ("()", r(e))
        case ast.Table(fields=fs):
            return ("{}", *[r(f) for f in fs])
        case ast.TableField(key=None, value=v):
            return r(v)
        case ast.TableField(key=k, value=v, named=True):
            return ("=", k.value.decode(), r(v))
        case ast.TableField(key=k, value=v):
            return ("[]=", r(k), r(v))
        case ast.Function(params=p, is_vararg=va, body=b):
            return ("function", p + (["..."] if va else []), r(b))
        case ast.Block(stmts=s):
            return r(s)
        case ast.Local(names=ns, values=vs):
            return ("local", [x.name + (f"<{x.attrib}>" if x.attrib else "") for x in ns], *r(vs))
        case ast.Assign(targets=t, values=v):
            return ("=", r(t), r(v))
        case ast.CallStat(call=c):
            return r(c)
        case ast.Do(body=b):
            return ("do", r(b))
        case ast.While(cond=c, body=b, bound=bd):
            return ("while", r(c), r(b)) + ((bd,) if bd else ())
        case ast.Repeat(body=b, cond=c, bound=bd):
            return ("repeat", r(b), r(c)) + ((bd,) if bd else ())
        case ast.If(tests=ts, orelse=e):
            return ("if", *[(r(c), r(b)) for c, b in ts]) + ((("else", r(e)),) if e else ())
        case ast.NumericFor(var=v, start=a, stop=b, step=s, body=bd, bound=bound):
            return ("for", v, r(a), r(b), r(s), r(bd)) + ((bound,) if bound else ())
        case ast.GenericFor(names=ns, exprs=es, body=b):
            return ("forin", ns, r(es), r(b))
        case ast.FunctionDecl(path=p, method=m, func=f):
            return ("function", ".".join(p) + (":" + m if m else ""), r(f)[1], r(f.body))
        case ast.LocalFunction(name=name, func=f):
            return ("local function", name, r(f)[1], r(f.body))
        case ast.Return(values=v):
            return ("return", *r(v))
        case ast.Break():
            return ("break",)
        case ast.Goto(label=label):
            return ("goto", label)
        case ast.Label(name=name):
            return ("label", name)
    raise AssertionError(f"no rendering for {n!r}")


def expr(src: str):
    return r(parse("return " + src).body.stmts[0].values[0])


def stmts(src: str):
    return r(parse(src).body)


def error_of(src: str):
    with pytest.raises(CompileError) as info:
        parse(src, "t.lua")
    d = info.value.diagnostics[0]
    return d.line, d.col, d.message


# ---- expressions and precedence ------------------------------------------------

@pytest.mark.parametrize("src, tree", [
    ("1 + 2 * 3", ("+", 1, ("*", 2, 3))),
    ("1 * 2 + 3", ("+", ("*", 1, 2), 3)),
    ("1 - 2 - 3", ("-", ("-", 1, 2), 3)),
    ("2^3^2", ("^", 2, ("^", 3, 2))),
    ("-x^2", ("-", ("^", "x", 2))),
    ("2^-3", ("^", 2, ("-", 3))),
    ("-2^-3^2", ("-", ("^", 2, ("-", ("^", 3, 2))))),
    ("not a == b", ("==", ("not", "a"), "b")),
    ("a .. b .. c", ("..", "a", ("..", "b", "c"))),
    ("a or b and c", ("or", "a", ("and", "b", "c"))),
    ("a and b or c", ("or", ("and", "a", "b"), "c")),
    ("1 << 2 + 3", ("<<", 1, ("+", 2, 3))),
    ("a < b == c", ("==", ("<", "a", "b"), "c")),
    ("a | b ~ c & d", ("|", "a", ("~", "b", ("&", "c", "d")))),
    ("a & b << c", ("&", "a", ("<<", "b", "c"))),
    ("a .. b + c", ("..", "a", ("+", "b", "c"))),
    ("a << b .. c", ("<<", "a", ("..", "b", "c"))),
    ("a // b % c * d / e", ("/", ("*", ("%", ("//", "a", "b"), "c"), "d"), "e")),
    ("#t + 1", ("+", ("#", "t"), 1)),
    ("~a ~ b", ("~", ("~", "a"), "b")),
    ("- - x", ("-", ("-", "x"))),
    ("not not x", ("not", ("not", "x"))),
    ("a >= b ~= c <= d > e", (">", ("<=", ("~=", (">=", "a", "b"), "c"), "d"), "e")),
    ("(a + b) * c", ("*", ("()", ("+", "a", "b")), "c")),
    ("(f())", ("()", ("call", "f"))),
    ("a.b.c", (".", (".", "a", "b"), "c")),
    ("a[b][1]", ("[]", ("[]", "a", "b"), 1)),
    ("a.b:m(1, 2)", (":", (".", "a", "b"), "m", 1, 2)),
    ('f"str"', ("call", "f", b"str")),
    ("f[[long]]", ("call", "f", b"long")),
    ("f{1, x = 2; [3] = 4,}", ("call", "f", ("{}", 1, ("=", "x", 2), ("[]=", 3, 4)))),
    ("s:byte(1):len()", (":", (":", "s", "byte", 1), "len")),
    ("f(a)(b)", ("call", ("call", "f", "a"), "b")),
    ('("x"):rep(3)', (":", ("()", b"x"), "rep", 3)),
    ("function(a, b) return a end", ("function", ["a", "b"], [("return", "a")])),
    ("function(...) end", ("function", ["..."], [])),
    ("function(a, ...) end", ("function", ["a", "..."], [])),
    ("{}", ("{}",)),
    ("nil", None), ("true", True), ("false", False), ("...", "..."),
])
def test_expression_trees(src, tree):
    assert expr(src) == tree


_OPS = ["+", "-", "*", "//", "%", "&", "|", "~", "<<", ">>"]


@st.composite
def _int_exprs(draw, depth=0):
    if depth > 3 or draw(st.booleans()):
        return str(draw(st.integers(-9, 70)))
    if draw(st.integers(0, 5)) == 0:
        return draw(st.sampled_from(["-", "~", "- ", "~ "])) + "(" + draw(_int_exprs(depth + 1)) + ")"
    parts = [draw(_int_exprs(depth + 1)) for _ in range(draw(st.integers(2, 4)))]
    out = parts[0]
    for p in parts[1:]:
        out += f" {draw(st.sampled_from(_OPS))} {p}"
    return out


def _evaluate(n):
    if isinstance(n, ast.Int):
        return n.value
    if isinstance(n, ast.Paren):
        return _evaluate(n.expr)
    if isinstance(n, ast.UnOp):
        return (neg if n.op == "-" else bnot)(_evaluate(n.operand))
    return BINARY[n.op](_evaluate(n.left), _evaluate(n.right))


@settings(max_examples=150, deadline=None)
@given(_int_exprs())
def test_precedence_matches_lua(src):
    lupa = pytest.importorskip("lupa.lua54")
    lua = lupa.LuaRuntime()
    try:
        want = lua.execute("return " + src)
    except lupa.LuaError:
        want = "error"
    tree = parse("return " + src).body.stmts[0].values[0]
    try:
        got = _evaluate(tree)
    except LuaArithError:
        got = "error"
    assert got == want, src


# ---- literals --------------------------------------------------------------------

@pytest.mark.parametrize("src, value", [
    ("0", 0), ("42", 42), ("0x10", 16), ("0XfF", 255),
    ("0xffffffffffffffff", -1), ("0x7fffffffffffffff", 2**63 - 1),
    ("0x8000000000000000", -2**63), ("0x1ffffffffffffffff", -1),
    ("9223372036854775807", 2**63 - 1),
    ("1e3", ("float", "1e3")), ("1.5", ("float", "1.5")), ("0x1p4", ("float", "0x1p4")),
    (".5", ("float", ".5")), ("3.", ("float", "3.")), ("1E-2", ("float", "1E-2")),
    ("0x.8", ("float", "0x.8")),
])
def test_numbers(src, value):
    assert expr(src) == value


@pytest.mark.parametrize("lit", [
    r'"plain"', r"'single'", r'"\n\t\\\"\'\a\b\f\v\r"', r'"\65\066\0x\255"', r'"\x41\x7a\xFF"',
    '"a\\z   \n   b"', '"line\\\ncontinued"', r'"\u{48}\u{20AC}\u{10FFFF}\u{7FFFFFFF}"',
    "[[long\nstring]]", "[[\nskips first newline]]", "[==[with ]] inside]==]", "[=[\n\nx]=]",
    r'"é"', "''", '"\\1234"',
])
def test_strings_match_lua(lit):
    lupa = pytest.importorskip("lupa.lua54")
    want = lupa.LuaRuntime(encoding=None).execute(b"return " + lit.encode())
    assert expr(lit) == want


def test_comments_and_shebang():
    src = "#!/usr/bin/env luabpf\n-- line\n--[[ long\ncomment ]] x = 1 --[==[ another ]==]\n--[ not long\ny = 2"
    assert stmts(src) == [("=", ["x"], [1]), ("=", ["y"], [2])]


# ---- statements ------------------------------------------------------------------

@pytest.mark.parametrize("src, tree", [
    ("local x <const>, y <close> = 1, 2", [("local", ["x<const>", "y<close>"], 1, 2)]),
    ("local a", [("local", ["a"])]),
    ("a, b.c, d[1] = 1, 2", [("=", ["a", (".", "b", "c"), ("[]", "d", 1)], [1, 2])]),
    ("f(1); g:m()", [("call", "f", 1), (":", "g", "m")]),
    (";;", []),
    ("do local x end", [("do", [("local", ["x"])])]),
    ("while x do break end", [("while", "x", [("break",)])]),
    ("repeat local y until y", [("repeat", [("local", ["y"])], "y")]),
    ("if a then elseif b then x() else y() end",
     [("if", ("a", []), ("b", [("call", "x")]), ("else", [("call", "y")]))]),
    ("for i = 1, 10 do end", [("for", "i", 1, 10, None, [])]),
    ("for i = 10, 1, -1 do end", [("for", "i", 10, 1, ("-", 1), [])]),
    ("for k, v in pairs(t) do end", [("forin", ["k", "v"], [("call", "pairs", "t")], [])]),
    ("function a.b.c:m(x) return self end", [("function", "a.b.c:m", ["self", "x"], [("return", "self")])]),
    ("function f(...) end", [("function", "f", ["..."], [])]),
    ("local function g(a) end", [("local function", "g", ["a"], [])]),
    ("return", [("return",)]),
    ("return 1, 2;", [("return", 1, 2)]),
    ("goto done ::done::", [("goto", "done"), ("label", "done")]),
    ("x = 1 + 2\n(f)()", [("=", ["x"], [("+", 1, 2)]), ("call", ("()", "f"))]),
    ("x = y\n(f)()", [("=", ["x"], [("call", ("call", "y", "f"))])]),   # Lua reads it as a call too
])
def test_statement_trees(src, tree):
    assert stmts(src) == tree


def test_loop_bounds():
    src = "--@bound 10\nwhile x do end\n--@bound 3 -- why\nrepeat until y\n--@bound 64\nfor i = 1, n do end\nwhile z do end"
    assert [getattr(s, "bound") for s in parse(src).body.stmts] == [10, 3, 64, None]
    nested = parse("function f()\n  --@bound 5\n  for k, v in t do end\nend").body.stmts[0].func.body.stmts[0]
    assert nested.bound == 5


# ---- spans -----------------------------------------------------------------------

def _span(n):
    return (n.span.line, n.span.col, n.span.end_line, n.span.end_col)


def test_spans():
    chunk = parse("local x = 1\nfunction f(a)\n  if a then\n    return a.b + g(2, 'ss')\n  end\nend\n", "s.lua")
    assert chunk.span.file == "s.lua"
    local, func = chunk.body.stmts
    assert _span(local) == (1, 1, 1, 12)
    assert _span(local.names[0]) == (1, 7, 1, 8)
    assert _span(func) == (2, 1, 6, 4)
    if_ = func.func.body.stmts[0]
    assert _span(if_) == (3, 3, 5, 6)
    ret = if_.tests[0][1].stmts[0]
    plus = ret.values[0]
    assert _span(ret) == (4, 5, 4, 28)
    assert _span(plus) == (4, 12, 4, 28)
    assert _span(plus.left) == (4, 12, 4, 15)
    assert _span(plus.left.key) == (4, 14, 4, 15)
    call = plus.right
    assert _span(call) == (4, 18, 4, 28)
    assert _span(call.args[1]) == (4, 23, 4, 27)
    long = parse("x = [[a\nbb]] + 1").body.stmts[0].values[0]
    assert _span(long.left) == (1, 5, 2, 5)
    assert _span(long.right) == (2, 8, 2, 9)
    empty = parse("while x do end").body.stmts[0].body
    assert empty.stmts == [] and empty.span.line == 1


def test_every_node_has_a_span():
    for node in ast.walk(parse(FIGURE1 + FIGURE2 + "x = {a = 1, [2] = f{...}, g'x'}")):
        assert isinstance(node.span.line, int) and node.span.col >= 1, node


# ---- syntax errors ----------------------------------------------------------------

@pytest.mark.parametrize("src, line, col, fragment", [
    ("x = end", 1, 5, "unexpected 'end' (expected an expression)"),
    ("if x y", 1, 6, "'then' expected near 'y'"),
    ("if x then\n  y = 1\n", 3, 1, "'end' expected (to close 'if' at line 1) near <eof>"),
    ("while x do\n y()\n", 3, 1, "to close 'while' at line 1"),
    ("function f()\n  return 1\n", 3, 1, "to close 'function' at line 1"),
    ("repeat x() end", 1, 12, "'until' expected near 'end'"),
    ("x = 1 2", 1, 7, "unexpected '2'"),
    ("x y", 1, 3, "'=' expected"),
    ("(x)", 1, 4, "syntax error near <eof>"),
    ("f() = 1", 1, 1, "cannot assign to a function call"),
    ("for i x", 1, 7, "'=', ',' or 'in' expected near 'x'"),
    ("f(1 2", 1, 5, "')' or ',' expected near '2'"),
    ("local function f x", 1, 18, "'(' expected near 'x'"),
    ("a.b:c = 1", 1, 7, "function arguments expected near '='"),
    ("x = 'abc\ny = 1", 1, 5, "unfinished string"),
    ("x = [==[abc]]", 1, 5, "unfinished long string"),
    ("--[[ abc", 1, 3, "unfinished long comment"),
    ("x = 3x", 1, 5, "malformed number near '3x'"),
    ("x = 0x", 1, 5, "malformed number"),
    ("x = 1e", 1, 5, "malformed number"),
    ("x = 9223372036854775808", 1, 5, "integer constant out of range"),
    ("x = 9223372036854775808", 1, 5, "(kernel Lua has no floats)"),
    ("x = '\\q'", 1, 6, "invalid escape sequence '\\q'"),
    ("x = '\\300'", 1, 6, "decimal escape too large"),
    ("x = '\\xZZ'", 1, 6, "hexadecimal digit expected"),
    ("x = '\\u{80000000}'", 1, 6, "UTF-8 value too large"),
    ("local x <foo> = 1", 1, 10, "unknown attribute 'foo'"),
    ("end", 1, 1, "unexpected 'end'"),
    ("return 1\nx = 2", 2, 1, "<eof> expected near 'x'"),
    ("x = @", 1, 5, "unexpected symbol near '@'"),
    ("local = 3", 1, 7, "a name expected near '='"),
    ("x = ", 1, 5, "unexpected <eof> (expected an expression)"),
    ("f(", 1, 3, "expected an expression"),
    ("t = {1, 2 3}", 1, 11, "'}', ',' or ';' expected near '3'"),
    ("--@bound 3\nx = 1", 1, 1, "'--@bound' must stand on the line just before a while, repeat or for loop"),
    ("--@bound x\nwhile true do end", 1, 1, "bad '--@bound' annotation"),
    ("--@bound 0\nwhile true do end", 1, 1, "bad '--@bound' annotation"),
    ("x = " + "(" * 400 + "1" + ")" * 400, 1, 203, "nests too deeply (more than 200 levels)"),
    ("x = " + "- " * 3000 + "1", 1, 5, "nests too deeply"),
    ("x = " + "1 + " * 300 + "1", 1, 5, "nests too deeply"),
])
def test_syntax_errors(src, line, col, fragment):
    got_line, got_col, message = error_of(src)
    assert fragment in message
    assert (got_line, got_col) == (line, col), message


def test_errors_are_rendered_with_a_caret():
    with pytest.raises(CompileError) as info:
        parse("x = 1\nif x y\n", "t.lua")
    assert str(info.value).startswith("t.lua:2:6: error: 'then' expected near 'y'")


# ---- whole programs -------------------------------------------------------------------

def test_paper_figures_parse():
    assert [type(s).__name__ for s in parse(FIGURE1).body.stmts] == ["Assign"] * 3 + ["FunctionDecl"]
    f = parse(FIGURE2).body.stmts[0]
    assert f.func.params == ["hdr", "pld"]
    assert r(f.func.body.stmts[0]) == ("local", ["seg"], (":", "pld", "segment", 0, 255))


@pytest.mark.skipif(not PAPER.exists(), reason="the paper's text is not in ../shared/seeds")
def test_figures_are_the_papers():
    """FIGURE1/2 are the paper's, once the PDF extraction's inserted spaces are taken out."""
    text = PAPER.read_text()
    squash = lambda s: re.sub(r"\s", "", s)  # noqa: E731
    assert squash(text[text.index("up\n= 80"):text.index("Figure 1.")]) == squash(FIGURE1)
    assert squash(text[text.index("function filter ("):text.index("Figure 2.")]) == squash(FIGURE2)


@pytest.mark.parametrize("path", sorted((ROOT / "examples").rglob("*.lua")), ids=str)
def test_examples_parse(path):
    parse(path.read_text(), str(path))


def _program(lines: int) -> str:
    out, i = [], 0
    while len(out) < lines:
        out += [f"function f{i}(a, b, c)",
                f"  local x = a * 3 + b // 2 - (c % 7) << 1  -- comment {i}",
                "  if x > 10 and a ~= b or not c then",
                "    x = x + hdr.ip.src & 0xff | t[1]",
                "  elseif x < 0 then x = -x else x = 0 end",
                "  for j = 1, 10 do x = x + j end",
                "  return x, 'str\\n', data.layout{1, 2, k = 3}",
                "end"]
        i += 1
    return "\n".join(out) + "\n"


def test_parse_speed():
    """A 300-line file parses in about 15-20 ms (best of 5, on a loaded machine).

    Speed targets belong to benchmarks (bench/); this bound is loose on purpose
    and only catches gross regressions (an Earley parser, a parse tree walked twice).
    """
    src = _program(300)
    parse(src)
    best = min(_timed(parse, src) for _ in range(5))
    assert best < 0.200, f"{best * 1000:.1f} ms"


def _timed(f, arg) -> float:
    t = time.perf_counter()
    f(arg)
    return time.perf_counter() - t


_SOUP = st.lists(st.sampled_from(
    ["x", "f", "(", ")", "[", "]", "{", "}", "=", "==", ",", ";", ":", "::", ".", "..", "...", "+", "-", "^",
     "#", "~", "<", ">>", "1", "0x", "1.5", "'s", "'s'", '"\\', "[[", "]]", "[=[", "--", "--[[", "\n", " ",
     "local", "function", "end", "if", "then", "else", "elseif", "while", "do", "for", "in", "repeat",
     "until", "return", "break", "goto", "not", "and", "or", "nil", "true", "<const>", "\\z", "\\x4", "é"]),
    max_size=30).map(" ".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_SOUP, st.text(max_size=40)))
def test_any_input_gives_an_ast_or_a_compile_error(src):
    try:
        chunk = parse(src, "fuzz.lua")
    except CompileError as e:
        assert e.diagnostics and all(d.line >= 1 and d.col >= 1 for d in e.diagnostics)
        e.render()
    else:
        for node in ast.walk(chunk):
            assert node.span is not None
