"""How kernel-Lua values live in virtual registers.

Owns the value representation shared by lowering and the runtime: a value is
a (tag, payload) pair, each a compile-time constant or a VReg. Tags order the
types so that truth is one unsigned compare (tag >= TRUE); the payload is the
integer for INT and always 0 otherwise, so equality is tag == tag and
payload == payload. A value whose type is known statically carries a constant
tag and costs no register for it.

Strings are views of bytes: a constant (`data`, known at compile time) or a
range of the packet (`payload` = start offset, `length`). A layout view (a
header such as `hdr.ip`, or `view:layout(L)`) is a view plus a static
`obj` (the Layout). A constant string that a variable holds when which one is
known only at run time is a "cstr": payload = its index in the program's table
(`strconst` owns them). Compile-time objects (`hdr`, modules, layouts) are values
of kind "obj" with the object in `obj`; they never live in registers.
"""
from __future__ import annotations

from dataclasses import dataclass

from luabpf.compiler.ir import VReg

NIL, FALSE, TRUE, INT, STR, LVIEW, OBJ, CSTR = 0, 1, 2, 3, 4, 5, 6, 7

KINDS = ("nil", "bool", "int", "str", "lview", "obj", "cstr")
TAG_KIND = {NIL: "nil", FALSE: "bool", TRUE: "bool", INT: "int", STR: "str", LVIEW: "lview", OBJ: "obj",
            CSTR: "cstr"}
VIEW_KINDS = frozenset({"str", "lview"})
PAYLOAD_KINDS = frozenset({"int", "cstr"}) | VIEW_KINDS     # kinds whose payload is not 0


@dataclass(frozen=True, eq=False)
class Val:
    tag: int | VReg
    payload: int | VReg
    kinds: frozenset     # which of KINDS the value may be
    range: tuple[int, int] | None = None     # bounds of an integer payload, when known
    length: int | VReg = 0                   # bytes of a string or layout view
    data: bytes | None = None                # a constant string's bytes
    obj: object = None                       # a layout view's Layout; a compile-time object
    strs: frozenset | None = None            # a cstr's possible constants (indexes), when known

    @staticmethod
    def string(data: bytes) -> "Val":
        return Val(STR, 0, frozenset({"str"}), length=len(data), data=data)

    @staticmethod
    def view(start, length) -> "Val":
        """A string that is bytes [start, start + length) of the packet."""
        return Val(STR, start, frozenset({"str"}), length=length)

    @staticmethod
    def object(obj) -> "Val":
        return Val(OBJ, 0, frozenset({"obj"}), obj=obj)

    @staticmethod
    def int_(v: int | VReg, range: tuple[int, int] | None = None) -> "Val":
        return Val(INT, v, frozenset({"int"}), range)

    @staticmethod
    def nil() -> "Val":
        return Val(NIL, 0, frozenset({"nil"}))

    @staticmethod
    def bool_(b: bool | VReg) -> "Val":
        if isinstance(b, VReg):
            return Val(b, 0, frozenset({"bool"}))
        return Val(TRUE if b else FALSE, 0, frozenset({"bool"}))

    @property
    def is_const(self) -> bool:
        if "cstr" in self.kinds:                 # which constant is known at run time only
            return False
        if self.kinds & VIEW_KINDS:
            return self.data is not None
        return isinstance(self.tag, int) and isinstance(self.payload, int) and "obj" not in self.kinds

    @property
    def is_int(self) -> bool:
        return self.kinds == frozenset({"int"})

    def const_truth(self) -> bool | None:
        """True/False when the truth of the value is known at compile time."""
        if isinstance(self.tag, int):
            return self.tag >= TRUE
        if not self.kinds & {"nil", "bool"}:
            return True
        if self.kinds == frozenset({"nil"}):
            return False
        return None

    def python(self):
        """The constant as Python sees it (None, bool, int)."""
        assert self.is_const
        if self.tag == NIL:
            return None
        if self.tag in (FALSE, TRUE):
            return self.tag == TRUE
        if self.data is not None:
            return self.data
        return self.payload


class Values(list):
    """The values of a call whose number is known only at run time (`s:byte(i, j)` on a
    view of run-time length): as many as there can be, the ones past `count` (a VReg)
    nil. Lua's adjustments pad with nil anyway; `return` and `print` use `count`."""

    def __init__(self, vals, count):
        super().__init__(vals)
        self.count = count

    @staticmethod
    def like(model: list, vals) -> list:
        """vals with model's run-time count, if model has one."""
        return Values(vals, model.count) if isinstance(model, Values) else list(vals)


def falsy_kinds(kinds: frozenset) -> frozenset:
    return kinds & frozenset({"nil", "bool"})


LUA_TYPES = {"nil": "nil", "bool": "boolean", "int": "number", "str": "string", "lview": "userdata",
             "obj": "table", "cstr": "string"}
# a compile-time object (hdr, a map, a layout, a module) where lowering would have to choose one
OBJ_CHOICE = ("a library value (hdr, a map, a layout, a module) cannot be chosen at run time in "
              "kernel Lua: it exists at compile time only, so no variable or `and`/`or` can hold "
              "one of several, or one or another value")
OBJ_CHOICE_HINT = "name the library value directly where it is used, in each branch of an `if`"


def lua_type(kind: str) -> str:
    """Lua's type() name of a kind (a layout view is userdata, a library value a table)."""
    return LUA_TYPES[kind]


def static_type(v: "Val") -> str:
    """Lua's type name of v when it has one kind (else 'number': the other side of a failure)."""
    kinds = [k for k in KINDS if k in v.kinds]
    if kinds == ["obj"] and getattr(v.obj, "lua_type", None):     # a function value (Closure)
        return v.obj.lua_type
    return lua_type(kinds[0]) if len(kinds) == 1 else "number"


def type_name(kinds: frozenset) -> str:
    names = {"nil": "nil", "bool": "boolean", "int": "number", "str": "string", "lview": "layout",
             "obj": "library value", "cstr": "string"}
    said = list(dict.fromkeys(names[k] for k in KINDS if k in kinds))
    return " or ".join(said) or "no value"


class Var:
    """A Lua variable's storage: a tag register unless the type is one static kind
    other than bool, a payload register when it may hold an integer."""

    def __init__(self, name: str, kinds: frozenset, new_vreg, const: Val | None = None):
        self.name = name
        self.kinds = kinds
        self.const = const                      # a <const> or never-assigned constant
        self.range: tuple[int, int] | None = None   # bounds of the integer, when known
        self.tag: VReg | None = None
        self.payload: VReg | None = None
        self.length: VReg | None = None
        self.obj = None                         # the Layout of a layout view, fixed
        self.strs: frozenset = frozenset()      # the constants (strconst indexes) it may hold
        if const is None:
            if len(kinds) > 1 or "bool" in kinds:
                self.tag = new_vreg(name + ".t")
            if kinds & PAYLOAD_KINDS:
                self.payload = new_vreg(name)
            if kinds & VIEW_KINDS:
                self.length = new_vreg(name + ".len")

    def read(self) -> Val:
        if self.const is not None:
            return self.const
        if self.tag is not None:
            tag = self.tag
        else:
            tag = next((t for t, k in TAG_KIND.items() if k in self.kinds and t not in (FALSE, TRUE)), NIL)
        return Val(tag, self.payload if self.payload is not None else 0, self.kinds, self.range,
                   self.length if self.length is not None else 0, None, self.obj,
                   self.strs if "cstr" in self.kinds else None)

    def registers(self) -> list[VReg]:
        return [r for r in (self.tag, self.payload, self.length) if r is not None]
