"""Lexer: Lua 5.4 source text → a list of tokens for the Lark parser.

Owns the token vocabulary (`KEYWORDS`, `SYMBOLS`: the terminal names that
grammar.lark declares), `LuaToken` (a Lark token carrying its `Span`), and the
scanner: long brackets of any level, every string escape of Lua 5.4 into bytes,
numerals read the way Lua reads them (hex integers wrap, decimal integers must
fit in 64 bits, float literals are kept as text for the checker to refuse),
comments, and `--@bound N` notes. Lexical errors raise `SyntaxProblem` with the
span and Lua's words ("unfinished string", "malformed number near '3x'").
It does not know the grammar; parser.py does.
"""
from __future__ import annotations

import re

from lark import Token

from luabpf.compiler.front.luaint import MAXINT, wrap
from luabpf.compiler.front.source import Span


class SyntaxProblem(Exception):
    """A syntax error found by the lexer or the builder (span, message)."""

    def __init__(self, span: Span, message: str, hint: str | None = None):
        super().__init__(message)
        self.span, self.message, self.hint = span, message, hint


KEYWORDS = {k: k.upper() for k in (
    "and break do else elseif end false for function goto if in local nil not "
    "or repeat return then true until while").split()}
SYMBOLS = {
    "+": "PLUS", "-": "MINUS", "*": "STAR", "/": "SLASH", "//": "DSLASH", "%": "PERCENT",
    "^": "CARET", "#": "HASH", "&": "AMP", "~": "TILDE", "|": "PIPE", "<<": "SHL",
    ">>": "SHR", "..": "CONCAT", "==": "EQ", "~=": "NE", "<=": "LE", ">=": "GE",
    "<": "LT", ">": "GT", "=": "ASSIGN", "(": "LPAR", ")": "RPAR", "{": "LBRACE",
    "}": "RBRACE", "[": "LSQB", "]": "RSQB", "::": "DBCOLON", ";": "SEMI", ":": "COLON",
    ",": "COMMA", ".": "DOT", "...": "ELLIPSIS",
}
_TOKEN_RE = re.compile(r"""
    (?P<ws>[ \t\f\v\r]+)
  | (?P<nl>\n)
  | (?P<comment>--)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>\.?[0-9])
  | (?P<str>["'])
  | (?P<long>\[=*\[)
  | (?P<op>\.\.\.|\.\.|==|~=|<=|>=|<<|>>|//|::|[-+*/%^#&~|<>=(){}\[\];:,.])
""", re.X)
_DEC_NUMERAL = re.compile(r"(?:[eE][+-]?|[0-9a-fA-F.])*[A-Za-z_]?")
_HEX_NUMERAL = re.compile(r"0[xX](?:[pP][+-]?|[0-9a-fA-F.])*[A-Za-z_]?")
_DEC_INT = re.compile(r"[0-9]+")
_HEX_INT = re.compile(r"0[xX][0-9a-fA-F]+")
_DEC_FLOAT = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX_FLOAT = re.compile(r"0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?")
_PLAIN_STR = {q: re.compile(q + r"[^" + q + r"\\\n]*" + q) for q in "\"'"}
_STR_RUN = {q: re.compile(r"[^" + q + r"\\\n]+") for q in "\"'"}
_LONG_OPEN = re.compile(r"\[(=*)\[")
_BOUND = re.compile(r"--@bound\b(.*)")
_ESCAPES = {"n": b"\n", "t": b"\t", "\\": b"\\", '"': b'"', "'": b"'", "a": b"\a",
            "b": b"\b", "f": b"\f", "v": b"\v", "r": b"\r"}


class LuaToken(Token):
    """A Lark token that also knows its file, and so its `Span`."""
    __slots__ = ("file",)

    def __new__(cls, type_, value, start_pos, line, column, end_line, end_column, end_pos, file):
        inst = str.__new__(cls, value)            # Token.__new__ without its slow argument handling
        inst.type, inst.value, inst.start_pos = type_, value, start_pos
        inst.line, inst.column, inst.end_line = line, column, end_line
        inst.end_column, inst.end_pos, inst.file = end_column, end_pos, file
        return inst

    @property
    def span(self) -> Span:
        return Span(self.file, self.line, self.column, self.end_line, self.end_column)


class LuaLexer:
    """Scans one source text into a list of LuaTokens (and `--@bound` notes)."""

    def __init__(self, text: str, filename: str):
        self.text, self.file = text, filename
        self.tokens: list[LuaToken] = []
        self.bounds: dict[int, tuple[str, Span]] = {}    # line → (annotation text, span)
        self.line, self.line_start = 1, 0

    def span(self, start: int, end: int) -> Span:
        """The span of text[start:end], which must start on the current line."""
        end_line = self.line + self.text.count("\n", start, end)
        end_col = end - (self.text.rfind("\n", 0, end) + 1) + 1
        return Span(self.file, self.line, start - self.line_start + 1, end_line, end_col)

    def emit(self, type_: str, value, start: int, end: int) -> None:
        sp = self.span(start, end)
        self.tokens.append(LuaToken(type_, value, start, sp.line, sp.col, sp.end_line, sp.end_col, end, self.file))

    def advance_lines(self, start: int, end: int) -> None:
        n = self.text.count("\n", start, end)
        if n:
            self.line += n
            self.line_start = self.text.rfind("\n", start, end) + 1

    def run(self) -> list[LuaToken]:
        text, n = self.text, len(self.text)
        pos = 0
        if text.startswith("#"):                  # a first line `#!...` is skipped, as lua does
            pos = text.find("\n")
            pos = n if pos < 0 else pos
        match, append, file = _TOKEN_RE.match, self.tokens.append, self.file
        kw, sym = KEYWORDS.get, SYMBOLS
        while pos < n:
            m = match(text, pos)
            if m is None:
                sp = self.span(pos, pos + 1)
                raise SyntaxProblem(sp, f"unexpected symbol near '{text[pos]}'")
            kind, end = m.lastgroup, m.end()
            if kind == "name" or kind == "op":          # the common case, inlined
                word, line, col = m.group(), self.line, pos - self.line_start + 1
                type_ = kw(word, "NAME") if kind == "name" else sym[word]
                append(LuaToken(type_, word, pos, line, col, line, col + end - pos, end, file))
            elif kind == "ws":
                pass
            elif kind == "nl":
                self.line += 1
                self.line_start = end
            elif kind == "number":
                end = self.number(pos)
            elif kind == "str":
                end = self.short_string(pos, m.group())
            elif kind == "long":
                end = self.long_bracket(pos, "string")
            else:
                end = self.comment(pos)
            pos = end
        return self.tokens

    def number(self, pos: int) -> int:
        text = self.text
        hexa = text.startswith(("0x", "0X"), pos)
        end = (_HEX_NUMERAL if hexa else _DEC_NUMERAL).match(text, pos).end()
        lit = text[pos:end]
        if _DEC_INT.fullmatch(lit):
            value = int(lit)
            if value > MAXINT:
                hint = "for -9223372036854775808 write math.mininteger" if value == MAXINT + 1 else None
                raise SyntaxProblem(self.span(pos, end), f"integer constant out of range: {lit} does not "
                               "fit in a signed 64-bit integer (kernel Lua has no floats)", hint)
            self.emit("NUMBER", value, pos, end)
        elif _HEX_INT.fullmatch(lit):
            self.emit("NUMBER", wrap(int(lit[2:], 16)), pos, end)
        elif _DEC_FLOAT.fullmatch(lit) or _HEX_FLOAT.fullmatch(lit):
            self.emit("NUMBER", lit, pos, end)          # a str value: a float literal
        else:
            raise SyntaxProblem(self.span(pos, end), f"malformed number near '{lit}'")
        return end

    def short_string(self, pos: int, quote: str) -> int:
        text = self.text
        m = _PLAIN_STR[quote].match(text, pos)
        if m:
            end = m.end()
            self.emit("STRING", text[pos + 1:end - 1].encode("utf-8"), pos, end)
            return end
        out = bytearray()
        i, n, run = pos + 1, len(text), _STR_RUN[quote]
        while True:
            if i >= n or text[i] == "\n":
                raise SyntaxProblem(self.span(pos, pos + 1), "unfinished string",
                               "close it with " + quote + " on the same line, or use [[ ]] for text on several lines")
            c = text[i]
            if c == quote:
                break
            if c != "\\":
                m = run.match(text, i)
                out += m.group().encode("utf-8")
                i = m.end()
                continue
            i = self.escape(i, out)
        end = i + 1
        self.emit("STRING", bytes(out), pos, end)
        self.advance_lines(pos, end)
        return end

    def escape(self, i: int, out: bytearray) -> int:
        """Decode the escape at text[i] == '\\' into out; return the index after it."""
        text, n = self.text, len(self.text)
        c = text[i + 1] if i + 1 < n else ""
        bad = lambda length, msg: SyntaxProblem(self.span_at(i, i + length), msg)  # noqa: E731
        if c in _ESCAPES:
            out += _ESCAPES[c]
            return i + 2
        if c in "\n\r":                           # backslash-newline: a newline
            out += b"\n"
            j = i + 2
            if j < n and text[j] in "\n\r" and text[j] != c:
                j += 1
            return j
        if c == "x":
            digits = text[i + 2:i + 4]
            if len(digits) < 2 or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise bad(4, "hexadecimal digit expected in escape '\\x'")
            out.append(int(digits, 16))
            return i + 4
        if c == "z":
            j = i + 2
            while j < n and text[j] in " \t\n\r\f\v":
                j += 1
            return j
        if c.isdigit() and c.isascii():
            j = i + 1
            while j < n and j < i + 4 and text[j].isdigit() and text[j].isascii():
                j += 1
            value = int(text[i + 1:j])
            if value > 255:
                raise bad(j - i, f"decimal escape too large: '\\{value}' (at most 255)")
            out.append(value)
            return j
        if c == "u":
            m = re.compile(r"\{([0-9a-fA-F]+)\}").match(text, i + 2)
            if not m:
                raise bad(3, "missing '{' or '}' in \\u{XXX}, or a non-hexadecimal digit")
            value = int(m.group(1), 16)
            if value >= 1 << 31:
                raise bad(m.end() - i, "UTF-8 value too large in \\u{XXX}")
            out += _utf8(value)
            return m.end()
        raise bad(2, f"invalid escape sequence '\\{c}'" if c and c != "\n" else "unfinished string")

    def span_at(self, start: int, end: int) -> Span:
        """A span for text[start:end] somewhere after the current line start."""
        line = self.line + self.text.count("\n", self.line_start, start)
        col = start - (self.text.rfind("\n", 0, start) + 1) + 1
        return Span(self.file, line, col, line, col + end - start)

    def long_bracket(self, pos: int, what: str) -> int:
        text = self.text
        m = _LONG_OPEN.match(text, pos)
        close = "]" + m.group(1) + "]"
        stop = text.find(close, m.end())
        if stop < 0:
            raise SyntaxProblem(self.span(pos, m.end()), f"unfinished long {what}",
                           f"it needs a closing '{close}'")
        end = stop + len(close)
        if what == "string":
            body = text[m.end():stop]
            if body[:2] in ("\r\n", "\n\r"):
                body = body[2:]
            elif body[:1] in ("\r", "\n"):
                body = body[1:]
            body = body.replace("\r\n", "\n").replace("\n\r", "\n").replace("\r", "\n")
            self.emit("STRING", body.encode("utf-8"), pos, end)
        self.advance_lines(pos, end)
        return end

    def comment(self, pos: int) -> int:
        text = self.text
        if _LONG_OPEN.match(text, pos + 2):
            return self.long_bracket(pos + 2, "comment")
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        m = _BOUND.match(text, pos, end)
        if m:
            first_on_line = not self.tokens or self.tokens[-1].end_line < self.line
            if first_on_line:
                self.bounds[self.line] = (m.group(1), self.span(pos, end))
        return end


def _utf8(x: int) -> bytes:
    """Lua's luaO_utf8esc: UTF-8 extended to 31-bit values (up to 6 bytes)."""
    if x < 0x80:
        return bytes([x])
    out = []
    mfb = 0x3F
    while True:
        out.append(0x80 | (x & 0x3F))
        x >>= 6
        mfb >>= 1
        if x <= mfb:
            break
    out.append(((~mfb << 1) & 0xFF) | x)
    return bytes(reversed(out))
