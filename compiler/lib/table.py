"""The library table: every built-in name of kernel Lua, in one place.

Owns `BUILTINS`, one `Builtin` per name a script can use without defining it —
functions (`math.abs`), constants (`xdp.DROP`), string methods (`s:byte`), the
operators the library gives meaning to (`#s`, `m[k]`) and the definitions a hook
looks for (`function tracepoint.CATEGORY.EVENT`) — each with its signature, the
hooks whose scripts may use it, the function that lowers it and its doc line.
The checker's known globals (`global_names`), lowering's look-ups (`index`,
`call`, `call_method`), `calls`' rule for BPF functions (`in_bpf_function`) and
`luabpf help builtins` (docs/builtins.md) all read this table; nothing registers
itself by being imported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from luabpf.compiler.front import ast
from luabpf.compiler.hooks import cpufreq, packet
from luabpf.compiler.hooks.table import HOOK_NAMES
from luabpf.compiler.lib import events, intrinsics, maps, matching, system, text, views
from luabpf.compiler.lower import strconst
from luabpf.compiler.lower.values import Val, Values, type_name

HOOKS = HOOK_NAMES               # hook names, as --hook takes them
ALL = HOOKS
NOT_TC = tuple(h for h in HOOKS if h != "tc")       # a hook's constants are plain integers
NOT_XDP = tuple(h for h in HOOKS if h != "xdp")     # outside packet filters

KINDS = ("function", "constant", "method", "operator", "definition")


@dataclass(frozen=True)
class Builtin:
    name: str                   # as a script writes it: 'math.abs', 's:byte', '#s', 'xdp.DROP'
    signature: str              # 'math.abs(x) -> integer'
    hooks: tuple[str, ...]      # the hooks whose scripts may use it
    doc: str                    # one line
    group: str                  # the heading it is listed under
    kind: str = "function"      # one of KINDS
    lower: Callable | None = None   # functions: (lw, args, node, scope) -> list[Val];
    #                                 methods: (lw, s, args, node); operators: what lowers them
    value: Val | None = None    # a constant's value
    raw: bool = False           # lower receives the argument nodes, not values
    # A final argument call whose number of values is known only at run time (s:byte(i, j)
    # on a packet view): 'count' passes them as `Values` (the function minds the count),
    # 'fixed' refuses the call.
    tail: str = "fixed"
    # (lw, path, node): the located error for a use on a hook not in `hooks`
    refuse: Callable | None = None
    refused: tuple = ()         # what a refused call gives (so one mistake is one error)
    in_bpf_function: bool = False   # a BPF function may use it (compiler/lower/calls.py)
    text_args: bool = False     # its arguments may be text ('..', string.format: lib/text.py)
    public: bool = True         # False: luabpf's own Lua only (stdlib/), never a user's name

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.name.split("."))

    @property
    def root(self) -> str:
        """The global name a script writes first ('math' of 'math.abs')."""
        return self.path[0]


def _string_function(method: str):
    """string.METHOD(s, …) as s:METHOD(…)."""
    def lower(lw, args, node, scope):
        if not args:
            lw.error(node, f"bad argument #1 to '{method}' (string expected, got no value)")
            return [Val.nil()]
        rest = args[1:]
        if isinstance(args, Values):                # the string is never the call's value
            rest = Values(rest, lw.b.bin("sub", args.count, 1, "nargs"))
        return call_method(lw, args[0], method, rest, node)
    return lower


def _verdict(module: str, name: str) -> Builtin:
    """xdp.DROP and its kin: a filter's verdict on its own hook, an error on the other
    packet hook, a plain integer elsewhere."""
    hooks, c_name = (NOT_TC, f"XDP_{name}") if module == "xdp" else (NOT_XDP, f"TC_ACT_{name}")
    number = packet.ACTIONS[(module, name)]
    return Builtin(f"{module}.{name}", f"{module}.{name} = {number}", hooks,
                   f"the {c_name} verdict, for filter to return on {module}", "Packet verdicts",
                   kind="constant", value=Val.int_(number), refuse=packet.check_action)


def _policy_only(lw, path, node) -> None:
    cpufreq.outside_policy(lw, ".".join(path), node)


_MAP_KIND_DOCS = {
    "hash": "a hash map of n integer keys to integers",
    "array": "an array map: keys 0 to n-1, each 0 until stored",
    "percpu_hash": "a hash map with a value per CPU (user space reads their sum)",
    "percpu_array": "an array map with a value per CPU (user space reads their sum)",
    "lru": "a hash map that evicts the least recently used entries when full",
}

BUILTINS: tuple[Builtin, ...] = (
    # ---- base
    Builtin("error", "error(message [, level])", ALL,
            "stop with a runtime error (the message is a constant string or integer, or "
            "text made by '..', string.format or tostring)", "Base",
            lower=intrinsics.lower_error, raw=True, in_bpf_function=True),
    Builtin("assert", "assert(v [, message]) -> v", ALL,
            "a runtime error (default 'assertion failed!') where v is false or nil, else v",
            "Base", lower=intrinsics.lower_assert, raw=True, in_bpf_function=True),
    Builtin("print", "print(...)", ALL,
            "send the values to user space as one event (integers, booleans, nil, constant "
            "strings; packet strings in filters; text made by '..', string.format or "
            "tostring, formatted in user space)", "Base", lower=events.lower_print,
            tail="count", text_args=True),
    Builtin("tostring", "tostring(v) -> string", ALL,
            "a string as itself (a view stays a view); a constant as its text; a value known "
            "only at run time as text for print and error", "Base",
            lower=text.lower_tostring, raw=True),
    Builtin("a .. b", "a .. b -> string", ALL,
            "Lua's concatenation of strings and integers: a constant string when both are "
            "constants, else text for print and error", "Base", kind="operator",
            lower=text.concat),
    # ---- math
    Builtin("math.abs", "math.abs(x) -> integer", ALL, "the absolute value of x (wraps at "
            "math.mininteger, as Lua's)", "Math", lower=intrinsics.math_abs, in_bpf_function=True),
    Builtin("math.min", "math.min(x, ...) -> integer", ALL, "the least of its arguments", "Math",
            lower=intrinsics.math_min, in_bpf_function=True),
    Builtin("math.max", "math.max(x, ...) -> integer", ALL, "the greatest of its arguments",
            "Math", lower=intrinsics.math_max, in_bpf_function=True),
    Builtin("math.maxinteger", "math.maxinteger = 2^63 - 1", ALL, "the largest integer", "Math",
            kind="constant", value=intrinsics.MAXINTEGER, in_bpf_function=True),
    Builtin("math.mininteger", "math.mininteger = -2^63", ALL, "the smallest integer", "Math",
            kind="constant", value=intrinsics.MININTEGER, in_bpf_function=True),
    # ---- strings
    Builtin("#s", "#s -> integer", ALL, "the length of a string or view in bytes", "Strings",
            kind="operator", lower=views.length),
    Builtin("s:len", "s:len() -> integer", ALL, "the length of s in bytes", "Strings",
            kind="method", lower=views.method_len),
    Builtin("s:byte", "s:byte([i [, j]]) -> integer...", ALL,
            "the bytes s[i..j] (default i = 1, j = i) as integers; at most 16 on a view",
            "Strings", kind="method", lower=views.method_byte),
    Builtin("s:sub", "s:sub(i [, j]) -> string", ALL,
            "the bytes s[i..j] (Lua's rules: 1-based, negative from the end), a view of s",
            "Strings", kind="method", lower=views.method_sub),
    Builtin("s:segment", "s:segment(off [, len]) -> string", ALL,
            "Luadata's segment: len bytes from the 0-based offset off, cut at the end of s",
            "Strings", kind="method", lower=views.method_segment),
    Builtin("s:layout", "s:layout(L) -> layout view", ALL,
            "s read through the layout L (data.layout): fields by name", "Strings",
            kind="method", lower=views.method_layout),
    Builtin("s:match", "s:match(pattern [, init]) -> captures", ALL,
            "Lua's string.match; the pattern is a constant, compiled to bounded BPF code",
            "Strings", kind="method", lower=matching.method_match),
    Builtin("s:find", "s:find(pattern [, init [, plain]]) -> start, end, captures", ALL,
            "Lua's string.find; the pattern and plain are constants", "Strings",
            kind="method", lower=matching.method_find),
    Builtin("string.format", "string.format(fmt, ...) -> string", ALL,
            "Lua 5.4's format (%d %i %u %c %x %X %o %s %q %%, flags, width, precision) with a "
            "constant fmt: a constant string when every argument is a constant, else text "
            "for print and error", "Strings", lower=text.string_format, raw=True),
    *(Builtin(f"string.{m}", f"string.{m}(s{rest})", ALL, f"s:{m}({rest.lstrip(', ')})",
              "Strings", lower=_string_function(m), tail="count")
      for m, rest in (("byte", " [, i [, j]]"), ("sub", ", i [, j]"), ("len", ""),
                      ("match", ", pattern [, init]"), ("find", ", pattern [, init [, plain]]"))),
    # ---- layouts
    Builtin("data.layout", "data.layout{ name = {bit_offset, bit_width [, \"string\"]}, ... }",
            ALL, "a layout (Luadata's) to read a view's fields with s:layout(L)", "Layouts",
            lower=intrinsics.data_layout, raw=True),
    # ---- maps
    *(Builtin(f"map.{kind}", f"map.{kind}(n) -> map", ALL,
              f"{_MAP_KIND_DOCS[kind]} (top level only)", "Maps", lower=maps.declare(kind))
      for kind in maps.KINDS),
    Builtin("m[k]", "m[k] -> integer or nil", ALL, "the value stored at key k, nil when absent",
            "Maps", kind="operator", lower=maps.read),
    Builtin("m[k] = v", "m[k] = v", ALL,
            "store v at key k; m[k] = nil deletes (not in array maps); a refused store is counted",
            "Maps", kind="operator", lower=maps.write),
    Builtin("map.add", "map.add(m, k, n)", ALL, "m[k] = (m[k] or 0) + n, atomically", "Maps",
            lower=maps.add_call, in_bpf_function=True),
    # ---- the machine
    Builtin("time.ns", "time.ns() -> integer", ALL,
            "nanoseconds since boot (the monotonic clock)", "System", lower=system.time_ns,
            in_bpf_function=True),
    Builtin("bpf.cpu", "bpf.cpu() -> integer", ALL, "the number of the CPU the program runs on",
            "System", lower=system.bpf_cpu, in_bpf_function=True),
    # ---- hooks' own names
    *(_verdict(module, name) for module, name in packet.ACTIONS),
    Builtin("cpufreq.target", "cpufreq.target(cpu, freq, rel)", ("cpufreq",),
            "request a frequency in kHz for cpu; rel is the constant '<=' or '>='",
            "CPU-frequency policies", lower=cpufreq.target, refuse=_policy_only),
    Builtin("cpufreq.load", "cpufreq.load(cpu) -> integer", ("cpufreq",),
            "percent of cpu's last interval spent running tasks", "CPU-frequency policies",
            lower=cpufreq.load, refuse=_policy_only, refused=(Val.int_(0),)),
    Builtin("acpi.get_temp", "acpi.get_temp(cpu) -> integer", ("cpufreq",),
            "whole degrees Celsius of cpu's thermal zone (0 without one)",
            "CPU-frequency policies", lower=cpufreq.get_temp, refuse=_policy_only,
            refused=(Val.int_(0),)),
    Builtin("luabpf.idle_switch", "luabpf.idle_switch(prev_pid, next_pid)", ("tracepoint",),
            "time the CPU's stays in its idle task (stdlib/cpufreq.lua's sched_switch)",
            "CPU-frequency policies", lower=cpufreq.idle_switch, public=False),
    Builtin("tracepoint.CATEGORY.EVENT", "function tracepoint.CATEGORY.EVENT(args)",
            ("tracepoint",), "a program on the CATEGORY:EVENT tracepoint; args.FIELD reads "
            "an integer field of the event", "Tracepoints", kind="definition"),
)

GROUPS = tuple(dict.fromkeys(b.group for b in BUILTINS))
_BY_PATH = {b.path: b for b in BUILTINS if b.kind in ("function", "constant")}
METHODS = {b.name.split(":", 1)[1]: b for b in BUILTINS if b.kind == "method"}


def global_names() -> frozenset[str]:
    """The global names a script may use without defining them (the checker's)."""
    return frozenset(b.root for b in BUILTINS
                     if b.public and b.kind in ("function", "constant", "definition"))


def lookup(path: tuple[str, ...]) -> Builtin | None:
    """The function or constant at a dotted path (('math', 'abs')), or None."""
    return _BY_PATH.get(path)


# ---- lowering's look-ups ------------------------------------------------------------

def dotted_path(e, scope) -> tuple[str, ...] | None:
    """`a.b.c` as ('a', 'b', 'c') when `a` is not a local or a definition of the script."""
    parts = []
    while isinstance(e, ast.Index) and e.dot and isinstance(e.key, ast.String):
        parts.append(e.key.value.decode())
        e = e.obj
    if not isinstance(e, ast.Name) or scope.lookup(e.name) is not None:
        return None
    parts.append(e.name)
    return tuple(reversed(parts))


def _allowed(lw, found: Builtin, path, node) -> bool:
    """Whether this hook may use it; the located error (the entry's own) where not."""
    if lw.hook.name in found.hooks:
        return True
    if found.refuse is not None:
        found.refuse(lw, path, node)
    else:
        lw.error(node, f"'{found.name}' is not available in the {lw.hook.name} hook")
    return False


def index(lw, e: ast.Index, scope) -> Val | None:
    """The value of a library path (`math.maxinteger`, `xdp.DROP`), None when e is not one."""
    path = dotted_path(e, scope)
    if path is None:
        return None
    found = lookup(path)
    if found is None:
        if path[0] == "math" and len(path) == 2 and path[1] in ("huge", "pi"):
            lw.error(e, f"math.{path[1]} is a floating-point number: not available in kernel Lua")
            return Val.nil()
        lw.error(e, f"unknown name '{'.'.join(path)}'")
        return Val.nil()
    if found.value is None:
        lw.error(e, f"'{'.'.join(path)}' is a function: call it")
        return Val.nil()
    _allowed(lw, found, path, e)
    return found.value


def call(lw, e, scope) -> list[Val] | None:
    """The values of a library call (`math.max(a, b)`), None when e is not one."""
    if isinstance(e, ast.MethodCall):
        return None
    path = dotted_path(e.func, scope)
    if path is None:
        return None
    found = lookup(path)
    if found is None or found.lower is None:
        lw.error(e, f"unknown function '{'.'.join(path)}'")
        return []
    if found.raw:
        return found.lower(lw, e.args, e, scope) if _allowed(lw, found, path, e) \
            else list(found.refused)
    if found.text_args:
        for a in e.args:
            text.allow(lw, a)
    args, count = lw.explist_count(e.args, scope)
    if not _allowed(lw, found, path, e):
        return list(found.refused)
    if not isinstance(count, int):
        if found.tail == "fixed":
            lw.error(e.args[-1], f"'{'.'.join(path)}' would get a number of arguments known only "
                                 "at run time (its last argument is a call whose number of values "
                                 "varies, as s:byte(i, j) on a packet view does): kernel Lua needs "
                                 "it at compile time here",
                     hint="take the values into locals first: local a, b = s:byte(i, j)")
            return [Val.nil()]
        args = Values(args, count)
    if strconst.any_cstr(args):              # once per string the arguments may be
        return strconst.each_value(lw, args, (id(e), "call"),
                                   lambda *alts: found.lower(lw, Values.like(args, alts), e, scope))
    return found.lower(lw, args, e, scope)


def call_method(lw, obj: Val, method: str, args: list[Val], node) -> list[Val]:
    """obj:method(args): the string methods (a method on anything else is an error)."""
    found = METHODS.get(method)
    if "str" not in obj.kinds or found is None:
        what = type_name(obj.kinds)
        known = ", ".join(sorted(METHODS))
        lw.error(node, f"method '{method}' is not available on a {what} value in kernel Lua"
                       + (f" (strings have: {known})" if "str" in obj.kinds else ""))
        return [Val.nil()]
    s = views.require(lw, obj, "str", node,
                      f"attempt to index a {type_name(obj.kinds - {'str'})} value")
    return found.lower(lw, s, args, node)


# ---- the table as text (`luabpf help builtins`, docs/builtins.md) --------------------

def _hooks_text(hooks: tuple[str, ...]) -> str:
    if hooks == ALL:
        return "all"
    missing = [h for h in ALL if h not in hooks]
    if len(missing) == 1 and len(hooks) > 1:
        return f"all but {missing[0]}"
    return ", ".join(hooks)


def rows(group: str) -> list[Builtin]:
    return [b for b in BUILTINS if b.group == group and b.public]


def as_text() -> str:
    """The table grouped, one built-in a line: signature, hooks, doc."""
    out = []
    for group in GROUPS:
        entries = rows(group)
        if not entries:
            continue
        out.append(f"{group}:")
        width = max(len(b.signature) for b in entries)
        for b in entries:
            out.append(f"  {b.signature:<{width}}  [{_hooks_text(b.hooks)}]  {b.doc}")
        out.append("")
    return "\n".join(out)


def as_markdown() -> str:
    """docs/builtins.md: the same table, a Markdown table per group."""
    out = ["# Built-in library of kernel Lua", "",
           "<!-- generated by `luabpf help builtins --markdown` from compiler/lib/table.py;",
           "     edit the table, then regenerate this page -->", "",
           "Every name a script can use without defining it. **Hooks** says which hooks' "
           "scripts may use it (`xdp`, `tc`, `cpufreq`, `tracepoint`, `function`); "
           "**BPF fn** marks what a function compiled as a BPF function of its own may "
           "use (docs/language.md, \"Calls and inlining\"). The language's rules are in "
           "docs/language.md.", ""]
    for group in GROUPS:
        entries = rows(group)
        if not entries:
            continue
        out += [f"## {group}", "", "| name | signature | hooks | BPF fn | what it does |",
                "|---|---|---|---|---|"]
        for b in entries:
            cells = [f"`{b.name}`", f"`{b.signature}`", _hooks_text(b.hooks),
                     "yes" if b.in_bpf_function else "", b.doc]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        out.append("")
    return "\n".join(out)
