"""Parser: Lua 5.4 source text → `ast.Chunk`, or a located `CompileError`.

Owns the Lark LALR parser (built once, at import, from grammar.lark), the
builder that turns each reduction straight into an AST node with its span (no
intermediate parse tree, so no recursion however deep the input), the wording
of syntax errors ("'then' expected near 'x'", "unexpected 'end' (expected an
expression)"), `--@bound N` annotations onto loops, and the nesting limit.
Tokens come from lexer.py.

It accepts all of Lua 5.4's syntax; what kernel Lua leaves out is check.py's
business. Public entry point: `parse(text, filename) -> ast.Chunk`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedInput
from lark.lexer import Lexer

from luabpf.compiler.front import ast
from luabpf.compiler.front.diagnostics import CompileError, Diagnostic, Diagnostics
from luabpf.compiler.front.lexer import KEYWORDS, SYMBOLS, LuaLexer, LuaToken, SyntaxProblem
from luabpf.compiler.front.luaint import MAXINT as MAX_FIGURE   # the largest `--@bound`
from luabpf.compiler.front.source import Source, Span

MAX_DEPTH = 200     # nesting of the syntax tree; deeper input is refused, never a RecursionError


class _NotAStatement(Exception):
    """An expression standing as a statement; worded at the next token."""

    def __init__(self, expr: ast.Node):
        self.expr = expr


# ---- builder: reductions → AST nodes ------------------------------------------

class _Args:
    __slots__ = ("items", "span")

    def __init__(self, items, span):
        self.items, self.span = items, span


class _FuncBody:
    __slots__ = ("params", "vararg", "body", "span")

    def __init__(self, params, vararg, body, span):
        self.params, self.vararg, self.body, self.span = params, vararg, body, span


def _sp(first, last) -> Span:
    """The span from the start of `first` to the end of `last` (tokens, nodes or lists)."""
    a = first[0].span if isinstance(first, list) else first.span
    b = last[-1].span if isinstance(last, list) else last.span
    return Span(a.file, a.line, a.col, b.end_line, b.end_col)


def _blk(block: ast.Block, prev) -> ast.Block:
    """Give an empty block a zero-width span just after the token before it."""
    if block.span is None:
        p = prev.span
        block.span = Span(p.file, p.end_line, p.end_col, p.end_line, p.end_col)
    return block


def _nodes(children) -> list:
    return [c for c in children if not isinstance(c, Token)]


# Lua 5.4's operator priorities (lparser.c): (left, right); right < left is right-associative.
_PRIORITY = {
    "or": (1, 1), "and": (2, 2),
    "<": (3, 3), ">": (3, 3), "<=": (3, 3), ">=": (3, 3), "~=": (3, 3), "==": (3, 3),
    "|": (4, 4), "~": (5, 5), "&": (6, 6), "<<": (7, 7), ">>": (7, 7), "..": (9, 8),
    "+": (10, 10), "-": (10, 10), "*": (11, 11), "/": (11, 11), "//": (11, 11), "%": (11, 11),
    "^": (14, 13),
}
_UNARY_PRIORITY = 12


def _subexpr(c: list, i: int, limit: int):
    """Lua's subexpr over the flat list [unop* operand (binop unop* operand)*] from c[i]:
    the expression whose operators bind tighter than `limit`, and the index after it."""
    first = c[i]
    if isinstance(first, Token):                  # a unary operator
        operand, i = _subexpr(c, i + 1, _UNARY_PRIORITY)
        e = ast.UnOp(_sp(first, operand), first.value, operand)
    else:
        e, i = first, i + 1
    n = len(c)
    while i < n:
        op = c[i]
        left, right = _PRIORITY[op.value]
        if left <= limit:
            break
        rhs, i = _subexpr(c, i + 1, right)
        e = ast.BinOp(_sp(e, rhs), op.value, e, rhs)
    return e, i


class _Build(Transformer):
    """One method per grammar alias; called by the LALR parser as it reduces."""
    # pylint: disable=missing-function-docstring

    def start(self, c):
        return c[0]

    def block(self, c):
        stmts = [s for s in c if s is not None]
        return ast.Block(_sp(stmts[0], stmts[-1]) if stmts else None, stmts)

    def retstat(self, c):
        values = c[1] if len(c) > 1 and isinstance(c[1], list) else []
        return ast.Return(_sp(c[0], c[-1]), values)

    def empty(self, c):
        return None

    def callstat(self, c):
        if not isinstance(c[0], (ast.Call, ast.MethodCall)):
            raise _NotAStatement(c[0])
        return ast.CallStat(c[0].span, c[0])

    def assign(self, c):
        targets = _nodes(c[:-1])
        for t in targets:
            if not isinstance(t, (ast.Name, ast.Index)):
                what = "a parenthesized expression" if isinstance(t, ast.Paren) else "a function call"
                raise SyntaxProblem(t.span, f"syntax error: cannot assign to {what}")
        return ast.Assign(_sp(c[0], c[-1]), targets, c[-1])

    def label(self, c):
        return ast.Label(_sp(c[0], c[-1]), c[1].value)

    def break_(self, c):
        return ast.Break(c[0].span)

    def goto(self, c):
        return ast.Goto(_sp(c[0], c[1]), c[1].value)

    def do(self, c):
        return ast.Do(_sp(c[0], c[-1]), _blk(c[1], c[0]))

    def while_(self, c):
        return ast.While(_sp(c[0], c[-1]), c[1], _blk(c[3], c[2]))

    def repeat(self, c):
        return ast.Repeat(_sp(c[0], c[-1]), _blk(c[1], c[0]), c[3])

    def if_(self, c):
        tests = [(c[1], _blk(c[3], c[2]))]
        orelse = None
        for part in c[4:-1]:
            if isinstance(part, tuple):
                tests.append(part)
            else:
                orelse = part
        return ast.If(_sp(c[0], c[-1]), tests, orelse)

    def elseif(self, c):
        return (c[1], _blk(c[3], c[2]))

    def else_(self, c):
        return _blk(c[1], c[0])

    def numfor(self, c):
        step = c[7] if len(c) == 11 else None
        return ast.NumericFor(_sp(c[0], c[-1]), c[1].value, c[3], c[5], step, _blk(c[-2], c[-3]))

    def genfor(self, c):
        k = next(i for i, t in enumerate(c) if isinstance(t, Token) and t.type == "IN")
        names = [t.value for t in c[1:k] if t.type == "NAME"]
        return ast.GenericFor(_sp(c[0], c[-1]), names, c[k + 1], _blk(c[-2], c[-3]))

    def funcdecl(self, c):
        path, method = c[1]
        params, vararg, body = c[2].params, c[2].vararg, c[2].body
        if method is not None:
            params = ["self"] + params
        name = ".".join(path) + (":" + method if method else "")
        func = ast.Function(_sp(c[0], c[-1]), params, vararg, body, name)
        return ast.FunctionDecl(func.span, path, method, func)

    def localfunc(self, c):
        params, vararg, body = c[3].params, c[3].vararg, c[3].body
        func = ast.Function(_sp(c[0], c[-1]), params, vararg, body, c[2].value)
        return ast.LocalFunction(func.span, c[2].value, func)

    def local(self, c):
        names = [a for a in c if isinstance(a, ast.AttribName)]
        values = c[-1] if isinstance(c[-1], list) else []
        return ast.Local(_sp(c[0], c[-1]), names, values)

    def attname(self, c):
        attrib = c[2].value if len(c) > 1 else None
        if attrib not in (None, "const", "close"):
            raise SyntaxProblem(c[2].span, f"unknown attribute '{attrib}'", "Lua has <const> and <close>")
        return ast.AttribName(_sp(c[0], c[-1]), c[0].value, attrib)

    def funcname(self, c):
        names = [t.value for t in c if t.type == "NAME"]
        has_method = any(t.type == "COLON" for t in c)
        return (names[:-1], names[-1]) if has_method else (names, None)

    def funcbody(self, c):
        params, vararg = c[1] if len(c) == 5 else ([], False)
        return _FuncBody(params, vararg, _blk(c[-2], c[-3]), c[-1].span)

    def parlist(self, c):
        return [t.value for t in c if t.type == "NAME"], c[-1].type == "ELLIPSIS"

    def explist(self, c):
        return _nodes(c)

    def exp(self, c):
        if len(c) == 1:
            return c[0]
        try:
            e, i = _subexpr(c, 0, 0)
        except RecursionError:
            raise SyntaxProblem(_sp(c[0], c[-1]), "this expression nests too deeply") from None
        assert i == len(c)
        return e

    def nil(self, c):
        return ast.Nil(c[0].span)

    def true(self, c):
        return ast.Bool(c[0].span, True)

    def false(self, c):
        return ast.Bool(c[0].span, False)

    def number(self, c):
        v = c[0].value
        return ast.Int(c[0].span, v) if isinstance(v, int) else ast.Float(c[0].span, v)

    def string(self, c):
        return ast.String(c[0].span, c[0].value)

    def vararg(self, c):
        return ast.Vararg(c[0].span)

    def functiondef(self, c):
        params, vararg, body = c[1].params, c[1].vararg, c[1].body
        return ast.Function(_sp(c[0], c[-1]), params, vararg, body)

    def dot(self, c):
        return ast.Index(_sp(c[0], c[2]), c[0], ast.String(c[2].span, c[2].value.encode()), dot=True)

    def index(self, c):
        return ast.Index(_sp(c[0], c[3]), c[0], c[2])

    def call(self, c):
        return ast.Call(_sp(c[0], c[1]), c[0], c[1].items)

    def method(self, c):
        return ast.MethodCall(_sp(c[0], c[3]), c[0], c[2].value, c[3].items)

    def name(self, c):
        return ast.Name(c[0].span, c[0].value)

    def paren(self, c):
        return ast.Paren(_sp(c[0], c[2]), c[1])

    def args(self, c):
        first = c[0]
        if isinstance(first, ast.Table):
            return _Args([first], first.span)
        if first.type == "STRING":
            return _Args([ast.String(first.span, first.value)], first.span)
        return _Args(c[1] if len(c) == 3 else [], _sp(c[0], c[-1]))

    def tableconstructor(self, c):
        return ast.Table(_sp(c[0], c[-1]), c[1] if len(c) == 3 else [])

    def fieldlist(self, c):
        return _nodes(c)

    def field_key(self, c):
        return ast.TableField(_sp(c[0], c[4]), c[1], c[4])

    def field_named(self, c):
        key = ast.String(c[0].span, c[0].value.encode())
        return ast.TableField(_sp(c[0], c[2]), key, c[2], named=True)

    def field_pos(self, c):
        return ast.TableField(c[0].span, None, c[0])


class _NoLexer(Lexer):
    """Lark needs a lexer class; parse() feeds tokens from LuaLexer itself."""

    def __init__(self, lexer_conf):
        pass

    def lex(self, lexer_state, parser_state):
        raise NotImplementedError("use luabpf.compiler.front.parser.parse()")


def _table_cache() -> str | bool:
    """Where Lark may keep the analysed parse table (it checks the grammar's hash on load).

    A private directory of the user's, never the shared /tmp: Lark's cache is a pickle."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    directory = os.path.join(base, "luabpf")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError:
        return False
    return os.path.join(directory, "grammar.lark.cache")


# Positions: the builder computes each node's span from its first and last token
# (keep_all_tokens), since an embedded transformer gets no Lark `meta`;
# propagate_positions would only add a call to every reduction.
_GRAMMAR = Path(__file__).with_name("grammar.lark").read_text()
_LARK = Lark(_GRAMMAR, parser="lalr", lexer=_NoLexer, propagate_positions=False,
             keep_all_tokens=True, maybe_placeholders=False, transformer=_Build(), cache=_table_cache())


# ---- syntax errors in words ---------------------------------------------------

_WORDS = {v: f"'{k}'" for k, v in {**KEYWORDS, **SYMBOLS}.items()}
_WORDS.update({"NAME": "a name", "NUMBER": "a number", "STRING": "a string", "$END": "<eof>"})
_ORDER = ["THEN", "DO", "RPAR", "RSQB", "RBRACE", "ASSIGN", "COMMA", "SEMI", "IN",
          "DBCOLON", "GT", "NAME", "LPAR", "LBRACE", "STRING"]
_OPENERS = {"IF", "WHILE", "FOR", "FUNCTION", "DO", "REPEAT"}


def _near(tok: Token, text: str) -> str:
    if tok.type == "$END":
        return "<eof>"
    raw = text[tok.start_pos:tok.end_pos]
    return "'" + (raw if len(raw) <= 24 else raw[:21] + "...") + "'"


def _open_block(stack) -> Token | None:
    """The keyword of the innermost block still open on the parser's value stack."""
    toks = [t for t in stack if isinstance(t, Token) and t.type in _OPENERS]
    if not toks:
        return None
    if toks[-1].type == "DO" and len(toks) > 1 and toks[-2].type in ("WHILE", "FOR"):
        return toks[-2]
    return toks[-1]


def _describe(accepted: set[str], tok: Token, stack, text: str) -> str:
    """Lua-style words for a token the parser cannot take, given what it could take."""
    near = _near(tok, text)
    if "NUMBER" in accepted:
        return f"unexpected {near} (expected an expression)"
    closer = next((t for t in ("END", "UNTIL", "$END") if t in accepted), None)
    block_word = tok.type in ("END", "ELSE", "ELSEIF", "UNTIL", "$END")
    if closer and (block_word or "LOCAL" not in accepted):
        if closer == "$END":
            if block_word:
                return f"unexpected {near}: there is no open block for it to close"
            return f"<eof> expected near {near}"
        opener = _open_block(stack)
        where = ""
        if opener is not None and opener.line != tok.line:
            where = f" (to close '{opener.value}' at line {opener.line})"
        return f"{_WORDS[closer]} expected{where} near {near}"
    if "LOCAL" in accepted:
        return f"unexpected {near} (expected a statement)"
    if {"LPAR", "LBRACE", "STRING"} <= accepted and "ASSIGN" not in accepted:
        return f"function arguments expected near {near}"
    wanted = [t for t in _ORDER if t in accepted and not (t == "GT" and "PLUS" in accepted)]
    if not wanted:
        return f"unexpected {near}"
    words = [_WORDS[t] for t in wanted[:4]]
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
    return f"{listed} expected near {near}"


# ---- `--@bound N` annotations and nesting depth -----------------------------------

_BOUND_OK = re.compile(r"\s+([0-9]+)\s*(?:--.*)?")
_LOOPS = (ast.While, ast.Repeat, ast.NumericFor, ast.GenericFor)


_STATEMENTS = (ast.Local, ast.Assign, ast.CallStat, ast.If, ast.Return)


def _pattern_calls(stmt: ast.Node) -> list[ast.Node]:
    """The s:match / s:find calls of a statement's own expressions (not of the blocks
    or functions inside it): a `--@bound N` before the statement caps their steps."""
    found, stack = [], [stmt]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.MethodCall) and node.method in ("match", "find"):
            found.append(node)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Index) and \
                isinstance(node.func.key, ast.String) and node.func.key.value in (b"match", b"find"):
            found.append(node)
        for value in vars(node).values():
            items = value if isinstance(value, list) else [value]
            for item in items:
                for sub in (item if isinstance(item, tuple) else (item,)):
                    if isinstance(sub, ast.Node) and not isinstance(sub, (ast.Block, ast.Function)):
                        stack.append(sub)
    return found


def _attach_bounds(chunk: ast.Chunk, bounds: dict, diags: Diagnostics) -> None:
    used = set()
    too_deep = []
    stack = [(chunk, 0)]
    while stack:                                  # iterative: no recursion on deep input
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            too_deep.append(node)
            continue
        line = node.span.line - 1
        if line in bounds and line not in used:
            targets = [node] if isinstance(node, _LOOPS) else \
                _pattern_calls(node) if isinstance(node, _STATEMENTS) else []
            if targets:
                used.add(line)
                m = _BOUND_OK.fullmatch(bounds[line][0])
                if m and 0 < int(m.group(1)) <= MAX_FIGURE:
                    for target in targets:
                        target.bound = int(m.group(1))
        for value in vars(node).values():
            if isinstance(value, ast.Node):
                stack.append((value, depth + 1))
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.Node):
                        stack.append((item, depth + 1))
                    elif isinstance(item, tuple):
                        stack.extend((sub, depth + 1) for sub in item)
    if too_deep:
        first = min(too_deep, key=lambda n: (n.span.line, n.span.col))
        diags.error(first.span, f"this program nests too deeply (more than {MAX_DEPTH} levels)",
                    "split the expression or the nested blocks with local variables or functions")
    for line, (rest, span) in sorted(bounds.items()):
        m = _BOUND_OK.fullmatch(rest)
        if not m or int(m.group(1)) <= 0:
            diags.error(span, "bad '--@bound' annotation: expected a positive integer",
                        "write it as '--@bound 100' on the line just before the loop")
        elif int(m.group(1)) > MAX_FIGURE:
            diags.error(span, f"'--@bound {m.group(1)}' is too large: a bound is at most "
                              f"{MAX_FIGURE} (2^63 - 1)",
                        "the hook's cost budget refuses far smaller bounds anyway; "
                        "state the loop's real bound")
        elif line not in used:
            diags.error(span, "'--@bound' must stand on the line just before a while, repeat or "
                              "for loop, or a statement that calls s:match or s:find")


# ---- entry point ------------------------------------------------------------------

def parse(text: str, filename: str = "<string>") -> ast.Chunk:
    """Parse Lua 5.4 source into an `ast.Chunk`; raise `CompileError` on a syntax error."""
    try:
        lexer = LuaLexer(text, filename)
        tokens = lexer.run()
        body = _feed(tokens, lexer)
    except SyntaxProblem as p:
        raise CompileError([Diagnostic(p.message, p.span, p.hint)], Source(text, filename)) from None
    _blk(body, _Pos(Span(filename, 1, 1, 1, 1)))
    last = tokens[-1].span if tokens else Span(filename, 1, 1, 1, 1)
    chunk = ast.Chunk(Span(filename, 1, 1, last.end_line, last.end_col), body, filename)
    diags = Diagnostics()
    _attach_bounds(chunk, lexer.bounds, diags)
    diags.raise_if_any(Source(text, filename))
    return chunk


class _Pos:
    __slots__ = ("span",)

    def __init__(self, span):
        self.span = span


def _feed(tokens: list[LuaToken], lexer: LuaLexer) -> ast.Block:
    ip = _LARK.parse_interactive()
    col = len(lexer.text) - lexer.line_start + 1
    end = LuaToken("$END", "", len(lexer.text), lexer.line, col, lexer.line, col + 1, len(lexer.text), lexer.file)
    tok = end
    try:
        for tok in tokens:
            ip.feed_token(tok)
        tok = end
        return ip.feed_token(end)
    except _NotAStatement as e:
        near = _near(tok, lexer.text)
        msg = (f"syntax error near {near} ('=' expected: a statement is an assignment or a call)"
               if isinstance(e.expr, (ast.Name, ast.Index)) else
               f"syntax error near {near} (this expression is not a statement: only calls are)")
        raise SyntaxProblem(tok.span, msg) from None
    except UnexpectedInput as e:
        bad = getattr(e, "token", tok) or tok
        if not isinstance(bad, LuaToken):
            bad = end
        try:
            accepted = ip.accepts()
        except Exception:                         # pylint: disable=broad-except
            accepted = set(getattr(e, "expected", ()) or ())
        message = _describe(accepted, bad, ip.parser_state.value_stack, lexer.text)
        raise SyntaxProblem(bad.span, message) from None
