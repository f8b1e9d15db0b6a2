"""Text for output: `..`, `string.format` and `tostring` where the result goes to
`print` or `error`.

Owns Lua 5.4's formatting of integers and strings (`format`, `render`, `tostring`),
the parsing of a constant format (`parse`), and the lowering of the three built-ins
to a `Text`: a compile-time list of parts, each a constant piece of text or a value
known only at run time with the conversion (`%d`, `%5.2x`, `%s`, …) that turns it
into text. A `Text` never exists in the kernel: `print` sends its values (as it sends
any value: `compiler/lib/events.py`) and user space renders it with `render` (the
same function that folds a text whose parts are all constants into a constant
string, usable anywhere). Everything Lua checks at run time (a number where `%d`
wants one, a nil in `..`) is checked in the kernel with Lua's message, so rendering
in user space never fails. Where a text would have to exist in the kernel (compared,
a key, `#`, stored, returned) lowering refuses it with a located error.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from luabpf.compiler import ir
from luabpf.compiler.front import ast, luaint
from luabpf.compiler.lower.values import Val, type_name

FLAGS_F = b"-+ #0"
FLAGS = {ord("d"): b"-+0 ", ord("i"): b"-+0 ", ord("u"): b"-0", ord("o"): b"-#0",
         ord("x"): b"-#0", ord("X"): b"-#0", ord("c"): b"-", ord("s"): b"-"}
INT_CONVERSIONS = b"diuoxXc"
FLOAT_CONVERSIONS = b"aAeEfFgG"
MAX_FORMAT = 32
MASK = (1 << 64) - 1


class LuaError(Exception):
    """The error Lua raises for this format or value (its message, without position)."""


# ---- Lua 5.4's formatting, in user space and for constants --------------------------

def tostring(value) -> bytes:
    """Lua's tostring of nil, a boolean, an integer or a string (bytes)."""
    if value is None:
        return b"nil"
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return str(value).encode()
    return bytes(value)


@dataclass(frozen=True)
class Spec:
    form: bytes          # '%-5.3d': flags, width, precision and the conversion
    conversion: int      # ord('d')
    arg: int             # Lua's argument number (2 is the first after the format)
    bad: str | None = None   # Lua's error on the spec itself (raised in Lua's order)


def parse(fmt: bytes, nargs: int) -> list:
    """The pieces of a format: bytes (literal text) and Specs, in order, ending with a
    LuaError where Lua's string.format stops on the format itself (with nargs arguments
    after it); a Spec's own error is its `bad`, raised in Lua's order by `check`."""
    out, i, arg, lit = [], 0, 1, bytearray()
    while i < len(fmt):
        c = fmt[i]
        if c != 0x25:
            lit.append(c)
            i += 1
            continue
        if i + 1 < len(fmt) and fmt[i + 1] == 0x25:
            lit.append(0x25)
            i += 2
            continue
        arg += 1
        if lit:
            out.append(bytes(lit))
            lit = bytearray()
        if arg > nargs + 1:
            out.append(LuaError(f"bad argument #{arg} to 'format' (no value)"))
            return out
        j = i + 1
        while j < len(fmt) and fmt[j] in FLAGS_F + b"123456789.":
            j += 1
        length = j - i                              # spanned characters and the specifier
        if length >= MAX_FORMAT - 10:
            out.append(LuaError("invalid format string to 'format'"))
            return out
        form = fmt[i:j + 1]
        conv = fmt[j] if j < len(fmt) else 0
        bad = None
        if conv == ord("q"):
            if len(form) != 2:
                bad = "specifier '%q' cannot have modifiers"
        elif conv in FLAGS:
            if not (conv == ord("s") and len(form) == 2):
                bad = _check(form, FLAGS[conv], conv != ord("c"))
        elif conv in FLOAT_CONVERSIONS or conv == ord("p"):
            pass                                    # refused by the caller (no floats)
        else:
            out.append(LuaError(f"invalid conversion '{_text(form)}' to 'format'"))
            return out
        out.append(Spec(form, conv, arg, bad))
        i = j + 1
    if lit:
        out.append(bytes(lit))
    return out


def _text(b: bytes) -> str:
    return b.decode("latin-1")


def _check(form: bytes, flags: bytes, precision: bool) -> str | None:
    """Lua 5.4's checkformat: flags of this conversion, width and precision of 2 digits."""
    k = 1
    while k < len(form) and form[k] in flags:
        k += 1
    if form[k:k + 1] != b"0":
        k = _two_digits(form, k)
        if form[k:k + 1] == b"." and precision:
            k = _two_digits(form, k + 1)
    if k >= len(form) or not chr(form[k]).isalpha():
        return f"invalid conversion specification: '{_text(form)}'"
    return None


def _two_digits(form: bytes, k: int) -> int:
    for _ in range(2):
        if k < len(form) and 0x30 <= form[k] <= 0x39:
            k += 1
    return k


_FORM = re.compile(rb"%([-+ #0]*)(\d*)(?:\.(\d*))?(.)$", re.S)


def convert(spec_form: bytes, value) -> bytes:
    """One conversion of a checked spec on a value of the right kind (an int for the
    integer conversions, any value for %s and %q)."""
    flags, width, precision, conv = _FORM.match(spec_form).groups()
    width = int(width) if width else 0
    precision = None if precision is None else int(precision or b"0")
    conv = conv[0]
    if conv == ord("q"):
        return quoted(value)
    if conv == ord("s"):
        body = tostring(value)
        if spec_form == b"%s":
            return body
        if precision is not None:
            body = body[:precision]
        elif len(body) >= 100:
            return body
        return _pad(b"", body, width, b"-" in flags, False)
    if conv == ord("c"):
        return _pad(b"", bytes([value & 0xFF]), width, b"-" in flags, False)
    prefix = b""
    if conv in b"di":
        digits = str(abs(value)).encode()
        prefix = b"-" if value < 0 else b"+" if b"+" in flags else b" " if b" " in flags else b""
    else:
        u = value & MASK
        digits = (str(u) if conv == ord("u") else format(u, {ord("o"): "o", ord("x"): "x",
                                                              ord("X"): "X"}[conv])).encode()
    if precision is not None:
        digits = b"" if precision == 0 and digits == b"0" else digits.rjust(precision, b"0")
    if b"#" in flags:
        if conv == ord("o") and not digits.startswith(b"0"):
            digits = b"0" + digits
        elif conv in b"xX" and value & MASK:
            prefix = b"0x" if conv == ord("x") else b"0X"
    zero = b"0" in flags and precision is None
    return _pad(prefix, digits, width, b"-" in flags, zero)


def _pad(prefix: bytes, body: bytes, width: int, left: bool, zero: bool) -> bytes:
    fill = width - len(prefix) - len(body)
    if fill <= 0:
        return prefix + body
    if left:
        return prefix + body + b" " * fill
    if zero:
        return prefix + b"0" * fill + body
    return b" " * fill + prefix + body


def quoted(value) -> bytes:
    """%q: an integer as Lua reads it back, a string quoted, nil and booleans as text."""
    if value is None or isinstance(value, bool):
        return tostring(value)
    if isinstance(value, int):
        return b"0x%x" % (value & MASK) if value == luaint.MININT else str(value).encode()
    s, out = bytes(value), bytearray(b'"')
    for i, c in enumerate(s):
        if c in b'"\\\n':
            out += b"\\" + bytes([c])
        elif c < 32 or c == 127:
            nxt = s[i + 1:i + 2]
            out += (b"\\%03d" if nxt and nxt.isdigit() else b"\\%d") % c
        else:
            out.append(c)
    return bytes(out + b'"')


def string_to_int(s: bytes) -> int | None:
    """A decimal or hexadecimal integer string as Lua's string-to-integer reads it (None
    where the string is not one of those)."""
    m = re.fullmatch(rb"\s*([-+])?(0[xX][0-9a-fA-F]+|[0-9]+)\s*", s)
    if m is None:
        return None
    body = m.group(2)
    if body[:2].lower() == b"0x":
        n = int(body, 16) & MASK
    else:
        n = int(body)
        if n > luaint.MAXINT + (1 if m.group(1) == b"-" else 0):
            return None                         # Lua reads it as a float
    n = -n if m.group(1) == b"-" else n
    return luaint.wrap(n)


_FLOAT = re.compile(rb"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def format_values(fmt: bytes, args: list) -> bytes:
    """Lua 5.4's string.format over constants (None, bool, int, bytes): LuaError where Lua
    raises."""
    out = bytearray()
    for piece in parse(fmt, len(args)):
        if isinstance(piece, LuaError):
            raise piece
        if isinstance(piece, bytes):
            out += piece
            continue
        out += convert(piece.form, checked(piece, args[piece.arg - 2]))
    return bytes(out)


def checked(spec: Spec, value):
    """value as spec converts it (a number from a numeric string), LuaError in Lua's
    order: %c's spec, then the argument; the argument, then %d's (and kin's) spec."""
    if spec.conversion in (ord("c"), ord("q")) and spec.bad:
        raise LuaError(spec.bad)
    if spec.conversion in INT_CONVERSIONS:
        if isinstance(value, bytes):
            n = string_to_int(value)
            if n is None and _FLOAT.fullmatch(value):
                f = float(value)
                if not -2.0 ** 63 <= f < 2.0 ** 63 or f != int(f):
                    raise LuaError(f"bad argument #{spec.arg} to 'format' (number has no "
                                   "integer representation)")
                n = int(f)
            if n is None:
                raise LuaError(f"bad argument #{spec.arg} to 'format' (number expected, got string)")
            value = n
        elif not isinstance(value, int) or isinstance(value, bool):
            got = "nil" if value is None else "boolean"
            raise LuaError(f"bad argument #{spec.arg} to 'format' (number expected, got {got})")
    if spec.conversion == ord("s") and spec.form != b"%s" and b"\0" in tostring(value):
        raise LuaError(f"bad argument #{spec.arg} to 'format' (string contains zeros)")
    if spec.bad:
        raise LuaError(spec.bad)
    return value


# ---- texts the compiler builds ------------------------------------------------------

@dataclass(frozen=True)
class Part:
    """A value known only at run time, and the conversion that makes it text."""
    form: bytes
    value: Val


@dataclass(frozen=True)
class Text:
    parts: tuple         # bytes | Part

    def constant(self) -> bytes | None:
        if all(isinstance(p, bytes) for p in self.parts):
            return b"".join(self.parts)
        return None


def as_val(text: Text) -> Val:
    const = text.constant()
    return Val.string(const) if const is not None else Val.object(text)


def text_of(v: Val) -> Text | None:
    return v.obj if isinstance(v.obj, Text) else None


def _join(*parts) -> Text:
    out: list = []
    for p in parts:
        for q in (p.parts if isinstance(p, Text) else (p,)):
            if isinstance(q, bytes) and out and isinstance(out[-1], bytes):
                out[-1] += q
            elif q != b"":
                out.append(q)
    return Text(tuple(out))


NOT_HERE = ("makes text that kernel Lua keeps only to print it or raise it as an error "
            "(formatted in user space, from the values the program sends): it cannot be "
            "compared, indexed, measured with #, stored, returned or used as a key here")
NOT_HERE_HINT = "write it as an argument of print(...) or error(...): print(string.format(...))"


def allow(lw, node) -> None:
    """node (an argument of print or error, or a part of a text) may be a text."""
    while True:
        lw.text_nodes[id(node)] = node
        if not isinstance(node, ast.Paren):
            return
        node = node.expr


def _allowed(lw, node) -> bool:
    return lw.text_nodes.get(id(node)) is node


def _result(lw, node, text: Text | None, what: str) -> Val:
    if text is None:
        return Val.nil()
    const = text.constant()
    if const is not None:
        return Val.string(const)
    if not _allowed(lw, node):
        lw.error(node, f"{what} of a value known only at run time {NOT_HERE}", NOT_HERE_HINT)
        return Val.string(b"")          # one mistake, one error: the rest compiles on
    return Val.object(text)


def _piece(lw, v: Val, form: bytes, node) -> Text | bytes | Part | None:
    """v as text under a %s-like conversion (`..`, tostring, %s, %q); None after a
    located error, or where the path ended in Lua's runtime error."""
    t = text_of(v)
    if t is not None:
        return t if form == b"%s" else _not_form(lw, node, form)
    if v.is_const:
        return convert(form, v.python())
    if v.kinds <= {"nil", "bool", "int"} or v.kinds == frozenset({"str"}) \
            or v.kinds == frozenset({"cstr"}) and v.strs is not None:
        return Part(form, _snapshot(lw, v))
    lw.error(node, f"a {type_name(v.kinds)} value known only at run time cannot be turned into "
                   "text in kernel Lua (integers, booleans, nil, constant strings and packet "
                   "strings can)")
    return None


def _snapshot(lw, v: Val) -> Val:
    """v as it is now (a later argument may change the variable it was read from)."""
    if not lw.b.reachable:
        return v
    keep = lambda x: lw.b.copy(x, "text") if isinstance(x, ir.VReg) else x
    return Val(keep(v.tag), keep(v.payload), v.kinds, v.range, keep(v.length), v.data, v.obj,
               v.strs)


def _not_form(lw, node, form):
    lw.error(node, f"'{_text(form)}' of text built by '..' or string.format is not available in "
                   "kernel Lua: use %s")
    return None


def concat(lw, e: ast.BinOp, scope) -> Val:
    """`a .. b`: strings and numbers (Lua's tostring of an integer), a text; Lua's error
    on anything else (right operand checked first where it is itself a `..`)."""
    allow(lw, e.left)
    allow(lw, e.right)
    a = lw.expr(e.left, scope)
    c = lw.expr(e.right, scope)
    lw.b.loc = e.span
    right = _operand(lw, c, e)
    left = _operand(lw, a, e) if right is not None else None
    if left is None or right is None:
        return Val.nil()
    return _result(lw, e, _join(left, right), "'..'")


def _operand(lw, v: Val, e) -> Text | bytes | Part | None:
    """One operand of `..` as text; Lua's runtime error where it is not a string or a
    number (checked in the kernel where the kind is known only at run time)."""
    say = lambda got: f"attempt to concatenate a {got} value"
    if text_of(v) is None and v.kinds & {"nil", "bool"}:
        rest = v.kinds - {"nil", "bool"}
        if rest not in (frozenset(), frozenset({"int"}), frozenset({"str"})):
            lw.error(e, f"'..' of a {type_name(v.kinds)} value known only at run time is not "
                        "available in kernel Lua: test it first")
            return None
        v = lw.require_kind(v, "str" if rest == {"str"} else "int", e, say)
        if not lw.b.reachable:
            return None
    return _piece(lw, v, b"%s", e)


def lower_tostring(lw, arg_nodes, node, scope) -> list[Val]:
    """tostring(v): a string as itself (a view stays a view), a constant as its text,
    a value known only at run time as a text."""
    if not arg_nodes:
        lw.error(node, "bad argument #1 to 'tostring' (value expected)")
        return [Val.nil()]
    allow(lw, arg_nodes[0])
    args, count = lw.explist_count(arg_nodes, scope)
    if not isinstance(count, int):
        lw.error(arg_nodes[-1], "'tostring' would get a number of arguments known only at run "
                                "time (its argument is a call whose number of values varies, as "
                                "s:byte(i, j) on a packet view does): kernel Lua needs it at "
                                "compile time here",
                 hint="take the values into locals first: local a, b = s:byte(i, j)")
        return [Val.nil()]
    if not args:
        lw.error(node, "bad argument #1 to 'tostring' (value expected)")
        return [Val.nil()]
    v = args[0]
    if v.kinds <= {"str", "cstr"} and text_of(v) is None:
        return [v]
    piece = _piece(lw, v, b"%s", node)
    if piece is None:
        return [Val.nil()]
    return [_result(lw, node, _join(piece), "tostring")]


def string_format(lw, arg_nodes, node, scope) -> list[Val]:
    """string.format(fmt, ...): the format a constant; each conversion checked as Lua
    checks it (a compile-time error where the format itself is bad is Lua's runtime
    error at this line)."""
    if not arg_nodes:
        lw.error(node, "bad argument #1 to 'format' (string expected, got no value)")
        return [Val.nil()]
    for a in arg_nodes[1:]:
        allow(lw, a)
    args, count = lw.explist_count(arg_nodes, scope)
    lw.b.loc = node.span
    if not isinstance(count, int):
        lw.error(arg_nodes[-1], "string.format would get a number of arguments known only at "
                                "run time: take the values into locals first")
        return [Val.nil()]
    fmt = args[0]
    if fmt.data is None:
        lw.error(arg_nodes[0], "the format of string.format must be a constant string in kernel "
                               "Lua")
        return [Val.nil()]
    out = []
    for p in parse(fmt.data, len(args) - 1):
        if isinstance(p, LuaError):
            lw.runtime_error(node.span, str(p))
            return [Val.nil()]
        if isinstance(p, bytes):
            out.append(p)
            continue
        got = _conversion(lw, p, args[p.arg - 1], node)
        if got is None:
            return [Val.nil()]
        out.append(got)
    return [_result(lw, node, _join(*out), "string.format")]


def _conversion(lw, spec: Spec, v: Val, node):
    conv = chr(spec.conversion)
    if spec.conversion in FLOAT_CONVERSIONS or conv == "p":
        lw.error(node, f"'{_text(spec.form)}' is not available in kernel Lua (integers and "
                       "strings only: %d %i %u %c %x %X %o %s %q)")
        return None
    if v.is_const:
        try:
            return convert(spec.form, checked(spec, v.python()))
        except LuaError as err:
            lw.runtime_error(node.span, str(err))
            return None
    if spec.conversion in INT_CONVERSIONS:
        if text_of(v) is not None or v.kinds & {"str", "cstr"}:
            lw.error(node, f"'{_text(spec.form)}' of a string known only at run time is not "
                           "available in kernel Lua (Lua would convert it to a number)")
            return None
        say = lambda got: f"bad argument #{spec.arg} to 'format' (number expected, got {got})"
        if "int" not in v.kinds:
            lw.runtime_error(node.span, say(type_name(v.kinds).split(" or ")[0]))
            return None
        v = lw.require_kind(v, "int", node, say)
        if spec.bad and lw.b.reachable:
            lw.runtime_error(node.span, spec.bad)
        return Part(spec.form, _snapshot(lw, v)) if lw.b.reachable else None
    if spec.bad:                                    # %c, %s, %q: the spec is checked first
        lw.runtime_error(node.span, spec.bad)
        return None
    if conv == "s" and spec.form != b"%s" and (text_of(v) is not None or v.kinds & {"str", "cstr"}):
        lw.error(node, f"'{_text(spec.form)}' of a string known only at run time is not available "
                       "in kernel Lua (use %s)")
        return None
    if conv == "q" and text_of(v) is not None:
        return _not_form(lw, node, spec.form)
    return _piece(lw, v, spec.form, node)


# ---- the manifest's form of a text, and its rendering in user space -------------------

def template(lw, text: Text, strings) -> list:
    """JSON of a text for the manifest: ['lit', str] | ['run', form] | ['bytes', form] |
    ['cstr', form, {index: str}]; the values of the run parts, in order, go in the record."""
    out = []
    for p in text.parts:
        if isinstance(p, bytes):
            out.append(["lit", p.decode("latin-1")])
        elif p.value.kinds == frozenset({"str"}):
            out.append(["bytes", _text(p.form)])
        elif p.value.kinds == frozenset({"cstr"}):
            out.append(["cstr", _text(p.form),
                        {str(i): strings[i].decode("latin-1") for i in sorted(p.value.strs)}])
        else:
            out.append(["run", _text(p.form)])
    return out


def render(template_: list, values: list) -> bytes:
    """A text from its template and the values of its run parts (None, bool, int, bytes;
    a cstr's index as an int)."""
    out, it = bytearray(), iter(values)
    for piece in template_:
        if piece[0] == "lit":
            out += piece[1].encode("latin-1")
            continue
        v = next(it)
        if piece[0] == "cstr":
            v = piece[2][str(v)].encode("latin-1")
        out += convert(piece[1].encode("latin-1"), v)
    return bytes(out)


def placeholder(t: Text) -> str:
    """A text as a report shows it without its values: each value as its conversion."""
    return b"".join(p if isinstance(p, bytes) else b"<" + p.form + b">"
                    for p in t.parts).decode("utf-8", "replace")
