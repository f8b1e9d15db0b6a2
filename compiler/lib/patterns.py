"""Lua 5.4 patterns at compile time: the parser and an exact reference matcher.

Owns the meaning of a pattern: `parse_pattern` reads pattern text the way
lstrlib.c's `match`/`classEnd`/`matchbracketclass` read it (the pattern is
walked linearly, so capture numbering, which capture a `)` closes and which
captures a back-reference may name are all static) and returns a `Pattern`: a
flat list of elements over 256-bit byte sets (C-locale ctype). The code
generator (`patterns_codegen`) compiles that list; `reference_match` and
`reference_find` interpret it with `str_find_aux`/`do_match`'s semantics and
are the pure-Python truth the kernel code is tested against (and which is
itself tested against Lua 5.4).

Lua reports a malformed pattern only when a match reaches the bad spot; here
every malformation is a compile-time `PatternError` with Lua's own words.
Stricter still, and named as such: a capture left open ("unfinished
capture", which Lua reports only on success) and a pattern whose recursion
could exceed Lua's 200 levels ("pattern too complex").

Also owns the static shape of the compiled matcher, which the kernel decides
on: `keeps_maximum` (a greedy item that never needs to give back),
`loop_nesting` (how deeply the matcher's loops nest) and the limit
`MAX_NESTING`: the verifier re-walks inner loops for every state of the outer
ones, so a deeper pattern is refused here, at its offending element, rather
than by the verifier (`parse_pattern(..., kernel=False)` skips that limit,
for the reference matcher alone).

Does not own code generation, nor how `string.match`/`find` reach a pattern.
"""
from __future__ import annotations

from dataclasses import dataclass

MAXCAPTURES = 32           # LUA_MAXCAPTURES
MAXCCALLS = 200            # lstrlib's matchdepth
SPECIALS = b"^$*+?.([%-"
ALL = (1 << 256) - 1


class PatternError(Exception):
    """A pattern Lua would reject, or one the compiler cannot compile; `offset` is the
    0-based byte of the pattern text where the problem is."""

    def __init__(self, message: str, offset: int = 0):
        super().__init__(message)
        self.message = message
        self.offset = offset


# ---- byte sets (C locale) ---------------------------------------------------

def _set(pred) -> int:
    return sum(1 << c for c in range(256) if pred(c))


def _upper(c): return 65 <= c <= 90
def _lower(c): return 97 <= c <= 122
def _digit(c): return 48 <= c <= 57
def _alpha(c): return _upper(c) or _lower(c)
def _graph(c): return 33 <= c <= 126


CLASSES = {
    ord("a"): _set(_alpha),
    ord("c"): _set(lambda c: c < 32 or c == 127),
    ord("d"): _set(_digit),
    ord("g"): _set(_graph),
    ord("l"): _set(_lower),
    ord("p"): _set(lambda c: _graph(c) and not (_alpha(c) or _digit(c))),
    ord("s"): _set(lambda c: 9 <= c <= 13 or c == 32),
    ord("u"): _set(_upper),
    ord("w"): _set(lambda c: _alpha(c) or _digit(c)),
    ord("x"): _set(lambda c: _digit(c) or 65 <= c <= 70 or 97 <= c <= 102),
    ord("z"): 1,                      # %z: the zero byte (deprecated, still in 5.4)
}


def class_set(cl: int) -> int:
    """match_class: the set of `%cl` (a class letter, or the byte itself)."""
    low = cl + 32 if _upper(cl) else cl
    if low not in CLASSES:
        return 1 << cl
    return CLASSES[low] if _lower(cl) else ALL ^ CLASSES[low]


def ranges(bits: int) -> list[tuple[int, int]]:
    """The set as sorted, disjoint, maximal [lo, hi] byte ranges."""
    out, c = [], 0
    while c < 256:
        if bits >> c & 1:
            lo = c
            while c < 256 and bits >> c & 1:
                c += 1
            out.append((lo, c - 1))
        else:
            c += 1
    return out


# ---- the pattern AST --------------------------------------------------------

@dataclass(frozen=True)
class Single:
    """One byte of `cls` (a 256-bit set), with an optional quantifier '*', '+', '-', '?'."""
    cls: int
    quant: str = ""

    def __contains__(self, c: int) -> bool:
        return bool(self.cls >> c & 1)


@dataclass(frozen=True)
class Open:
    index: int


@dataclass(frozen=True)
class Close:
    index: int


@dataclass(frozen=True)
class Position:
    index: int


@dataclass(frozen=True)
class BackRef:
    index: int                 # 0-based capture number


@dataclass(frozen=True)
class Balance:
    open: int
    close: int


@dataclass(frozen=True)
class Frontier:
    cls: int


@dataclass(frozen=True)
class End:
    """`$` as the last pattern character: the subject ends here."""


@dataclass(frozen=True)
class Pattern:
    text: bytes
    elements: tuple
    anchored: bool
    captures: tuple[str, ...]           # 'string' | 'position', per capture
    offsets: tuple[int, ...] = ()       # where each element starts in the text


# ---- parsing ------------------------------------------------------------------

class _Parser:
    def __init__(self, pat: bytes):
        self.p = pat
        self.n = len(pat)

    def at(self, i: int) -> int:
        """The byte at i; Lua strings end in a zero byte, which the C code reads."""
        return self.p[i] if i < self.n else 0

    def class_end(self, i: int) -> int:
        c = self.at(i)
        i += 1
        if c == 0x25:                               # '%'
            if i >= self.n:
                raise PatternError("malformed pattern (ends with '%')", i - 1)
            return i + 1
        if c == 0x5B:                               # '['
            start = i - 1
            if self.at(i) == 0x5E:
                i += 1
            while True:                             # look for a ']'
                if i >= self.n:
                    raise PatternError("malformed pattern (missing ']')", start)
                cc = self.p[i]
                i += 1
                if cc == 0x25 and i < self.n:
                    i += 1                          # skip escapes (e.g. '%]')
                if self.at(i) == 0x5D:
                    return i + 1
        return i

    def bracket(self, p: int, ec: int) -> int:
        """matchbracketclass: the set of `[...]` from its '[' at p to its ']' at ec."""
        sig = True
        if self.at(p + 1) == 0x5E:
            sig = False
            p += 1
        bits = 0
        while True:
            p += 1
            if p >= ec:
                break
            c = self.p[p]
            if c == 0x25:
                p += 1
                bits |= class_set(self.p[p])
            elif self.at(p + 1) == 0x2D and p + 2 < ec:
                lo, hi = c, self.p[p + 2]
                p += 2
                if lo <= hi:
                    bits |= ((1 << (hi - lo + 1)) - 1) << lo
            else:
                bits |= 1 << c
        return bits if sig else ALL ^ bits

    def single(self, i: int, ep: int) -> int:
        c = self.p[i]
        if c == 0x2E:                               # '.'
            return ALL
        if c == 0x25:
            return class_set(self.p[i + 1])
        if c == 0x5B:
            return self.bracket(i, ep - 1)
        return 1 << c

    def parse(self) -> Pattern:
        p = self.p
        i = 1 if p[:1] == b"^" else 0
        elements: list = []
        offsets: list[int] = []
        kinds: list[str] = []
        unfinished: list[int] = []
        depth = 1
        while i < self.n:
            c = p[i]
            nxt = self.at(i + 1)
            start_of = i
            if c == 0x28:                           # '('
                if len(kinds) >= MAXCAPTURES:
                    raise PatternError("too many captures", i)
                if nxt == 0x29:
                    elements.append(Position(len(kinds)))
                    kinds.append("position")
                    i += 2
                else:
                    elements.append(Open(len(kinds)))
                    unfinished.append(len(kinds))
                    kinds.append("string")
                    i += 1
                depth += 1
            elif c == 0x29:                         # ')'
                if not unfinished:
                    raise PatternError("invalid pattern capture", i)
                elements.append(Close(unfinished.pop()))
                depth += 1
                i += 1
            elif c == 0x24 and i + 1 == self.n:     # '$' at the end
                elements.append(End())
                i += 1
            elif c == 0x25 and nxt == 0x62:         # '%b'
                if i + 2 >= self.n - 1:
                    raise PatternError("malformed pattern (missing arguments to '%b')", i)
                elements.append(Balance(p[i + 2], p[i + 3]))
                i += 4
            elif c == 0x25 and nxt == 0x66:         # '%f'
                i += 2
                if self.at(i) != 0x5B:
                    raise PatternError("missing '[' after '%f' in pattern", i - 2)
                ep = self.class_end(i)
                elements.append(Frontier(self.bracket(i, ep - 1)))
                i = ep
            elif c == 0x25 and 0x30 <= nxt <= 0x39:  # '%0'-'%9'
                k = nxt - 0x31
                if k < 0 or k >= len(kinds) or k in unfinished:
                    raise PatternError(f"invalid capture index %{k + 1}", i)
                elements.append(BackRef(k))
                i += 2
            else:
                ep = self.class_end(i)
                q = self.at(ep)
                quant = chr(q) if ep < self.n and q in b"*+-?" else ""
                elements.append(Single(self.single(i, ep), quant))
                depth += bool(quant)
                i = ep + (1 if quant else 0)
            offsets += [start_of] * (len(elements) - len(offsets))
            if depth > MAXCCALLS:
                raise PatternError("pattern too complex", i)
        if unfinished:
            raise PatternError("unfinished capture", self.n)
        return Pattern(p, tuple(elements), p[:1] == b"^", tuple(kinds), tuple(offsets))


def parse_pattern(pat: bytes, plain: bool = False, kernel: bool = True) -> Pattern:
    """The pattern `pat` as `string.find`/`match` read it; with `plain`, a literal
    (find's fourth argument). With `kernel`, a pattern whose matcher the kernel
    verifier could not get through (see `loop_nesting`) is a PatternError too."""
    if plain:
        return Pattern(pat, tuple(Single(1 << c) for c in pat), False, (), tuple(range(len(pat))))
    p = _Parser(pat).parse()
    if kernel:
        depth, k = loop_nesting(p)
        if depth > MAX_NESTING:
            raise PatternError(
                f"pattern too complex for the kernel verifier: {depth} nested backtracking loops "
                f"(at most {MAX_NESTING}); anchor it with '^', or make quantifiers unambiguous "
                f"(a class that cannot match what follows it never backtracks)",
                p.offsets[k] if k < len(p.offsets) else 0)
    return p


# ---- what the compiled matcher's shape will be --------------------------------------

MAX_NESTING = 3          # measured on 4,000 generated patterns: depth 3 explores at most ~170,000
#                          instructions of the verifier's 1,000,000; depth 4 up to 740,000, 5 fails


def cannot_fail(elements) -> bool:
    """Whether these elements match at any position (captures, and `*` `?` `-` items)."""
    return all(isinstance(el, (Open, Close, Position)) or
               isinstance(el, Single) and el.quant in ("*", "?", "-") for el in elements)


def first_bytes(elements) -> int:
    """The bytes the elements can consume first, when they must consume one (ALL when
    they might not, or when that is not known: %f, back-references)."""
    bits = 0
    for el in elements:
        if isinstance(el, (Open, Close, Position)):
            continue
        if isinstance(el, Single):
            bits |= el.cls
            if el.quant in ("", "+"):
                return bits
            continue
        if isinstance(el, End):
            return bits                  # a byte is left: '$' fails there
        if isinstance(el, Balance):
            return bits | 1 << el.open
        return ALL
    return ALL


def keeps_maximum(elements, k: int) -> bool:
    """Whether greedy element k never profits from giving repetitions back: the rest
    cannot fail, or cannot start with a byte of k's class (which is what giving back
    leaves in front of it)."""
    rest = elements[k + 1:]
    return cannot_fail(rest) or first_bytes(rest) & elements[k].cls == 0


def loop_nesting(p: Pattern) -> tuple[int, int]:
    """How deeply the matcher's loops nest (the unanchored search, each backtracking
    quantifier around the rest of the pattern, and an innermost counting loop), and
    the element where that depth is reached. The verifier's work grows about tenfold
    per level, as it walks each loop again for every state of the loops around it."""
    els = p.elements
    depth = 0 if p.anchored else 1
    best, where = depth, 0
    for k, el in enumerate(els):
        leaf = inner = False
        if isinstance(el, Single) and el.quant == "-":
            inner = not cannot_fail(els[k + 1:])
            leaf = inner
        elif isinstance(el, Single) and el.quant:
            leaf = True
            inner = not keeps_maximum(els, k)
        elif isinstance(el, (Balance, BackRef)):
            leaf = True
        depth += inner
        if depth + leaf - inner > best or depth > best:
            best, where = max(depth, depth + leaf - inner), k
    return best, where


# ---- the reference matcher -----------------------------------------------------

UNFINISHED, POSITION = -1, -2


class _Matcher:
    """do_match over the element list, recursing exactly where lstrlib's match does."""

    def __init__(self, pattern: Pattern, s: bytes):
        self.e = pattern.elements
        self.s = s
        self.n = len(s)
        self.caps = [[0, UNFINISHED] for _ in pattern.captures]

    def single(self, i: int, el: Single) -> bool:
        return i < self.n and el.cls >> self.s[i] & 1 == 1

    def match(self, i: int, k: int):
        e, s, n = self.e, self.s, self.n
        while k < len(e):
            el = e[k]
            if isinstance(el, Single):
                if not self.single(i, el):
                    if el.quant in ("*", "?", "-"):
                        k += 1
                        continue
                    return None
                if el.quant == "?":
                    r = self.match(i + 1, k + 1)
                    if r is not None:
                        return r
                    k += 1
                    continue
                if el.quant in ("*", "+"):
                    return self.max_expand(i + (el.quant == "+"), el, k)
                if el.quant == "-":
                    return self.min_expand(i, el, k)
                i += 1
                k += 1
            elif isinstance(el, (Open, Position)):
                self.caps[el.index] = [i, UNFINISHED if isinstance(el, Open) else POSITION]
                return self.match(i, k + 1)
            elif isinstance(el, Close):
                self.caps[el.index][1] = i - self.caps[el.index][0]
                r = self.match(i, k + 1)
                if r is None:
                    self.caps[el.index][1] = UNFINISHED
                return r
            elif isinstance(el, End):
                return i if i == n else None
            elif isinstance(el, Balance):
                if i >= n or s[i] != el.open:
                    return None
                depth, j = 1, i
                while True:
                    j += 1
                    if j >= n:
                        return None
                    if s[j] == el.close:
                        depth -= 1
                        if depth == 0:
                            break
                    elif s[j] == el.open:
                        depth += 1
                i = j + 1
                k += 1
            elif isinstance(el, Frontier):
                prev = s[i - 1] if i > 0 else 0
                cur = s[i] if i < n else 0
                if el.cls >> prev & 1 or not el.cls >> cur & 1:
                    return None
                k += 1
            elif isinstance(el, BackRef):
                start, ln = self.caps[el.index]
                if ln == POSITION or n - i < ln or s[start:start + ln] != s[i:i + ln]:
                    return None
                i += ln
                k += 1
            else:
                raise AssertionError(el)
        return i

    def max_expand(self, i: int, el: Single, k: int):
        count = 0
        while self.single(i + count, el):
            count += 1
        while count >= 0:
            r = self.match(i + count, k + 1)
            if r is not None:
                return r
            count -= 1
        return None

    def min_expand(self, i: int, el: Single, k: int):
        while True:
            r = self.match(i, k + 1)
            if r is not None:
                return r
            if not self.single(i, el):
                return None
            i += 1

    def captures(self, start: int, end: int) -> tuple:
        if not self.caps:
            return (self.s[start:end],)
        return tuple(i + 1 if ln == POSITION else self.s[i:i + ln] for i, ln in self.caps)


def lua_init(init: int, length: int) -> int:
    """posrelatI(init, length) - 1: the 0-based start of a search (may exceed length)."""
    if init > 0:
        return init - 1
    if init == 0 or init < -length:
        return 0
    return length + init


def _search(p: Pattern, s: bytes, init: int):
    start = lua_init(init, len(s))
    if start > len(s):
        return None
    while True:
        m = _Matcher(p, s)
        end = m.match(start, 0)
        if end is not None:
            return m, start, end
        if start >= len(s) or p.anchored:
            return None
        start += 1


def reference_match(p: Pattern, s: bytes, init: int = 1) -> tuple | None:
    """string.match(s, pattern, init): the captures (bytes, or ints for position
    captures), or the whole match when there are none; None when nothing matches."""
    found = _search(p, s, init)
    if found is None:
        return None
    m, start, end = found
    return m.captures(start, end)


def reference_find(p: Pattern, s: bytes, init: int = 1) -> tuple | None:
    """string.find(s, pattern, init): (start, end, captures...) 1-based, or None."""
    found = _search(p, s, init)
    if found is None:
        return None
    m, start, end = found
    return (start + 1, end) + (m.captures(start, end) if m.caps else ())
