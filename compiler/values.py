"""How kernel-Lua values live in virtual registers.

Owns the value representation shared by lowering and the runtime: a value is
a (tag, payload) pair, each a compile-time constant or a VReg. Tags order the
types so that truth is one unsigned compare (tag >= TRUE); the payload is the
integer for INT and always 0 otherwise, so equality is tag == tag and
payload == payload. A value whose type is known statically carries a constant
tag and costs no register for it.
"""
from __future__ import annotations

from dataclasses import dataclass

from luabpf.compiler.ir import VReg

NIL, FALSE, TRUE, INT = 0, 1, 2, 3

KINDS = ("nil", "bool", "int")
TAG_KIND = {NIL: "nil", FALSE: "bool", TRUE: "bool", INT: "int"}


@dataclass(frozen=True, eq=False)
class Val:
    tag: int | VReg
    payload: int | VReg
    kinds: frozenset     # which of KINDS the value may be
    range: tuple[int, int] | None = None     # bounds of an integer payload, when known

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
        return isinstance(self.tag, int) and isinstance(self.payload, int)

    @property
    def is_int(self) -> bool:
        return self.kinds == frozenset({"int"})

    def const_truth(self) -> bool | None:
        """True/False when the truth of the value is known at compile time."""
        if isinstance(self.tag, int):
            return self.tag >= TRUE
        if "int" not in self.kinds and "bool" not in self.kinds:
            return False
        if self.kinds == frozenset({"int"}):
            return True
        return None

    def python(self):
        """The constant as Python sees it (None, bool, int)."""
        assert self.is_const
        if self.tag == NIL:
            return None
        if self.tag in (FALSE, TRUE):
            return self.tag == TRUE
        return self.payload


def falsy_kinds(kinds: frozenset) -> frozenset:
    return kinds & frozenset({"nil", "bool"})


def type_name(kinds: frozenset) -> str:
    names = {"nil": "nil", "bool": "boolean", "int": "number"}
    return " or ".join(names[k] for k in KINDS if k in kinds) or "no value"


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
        if const is None:
            if len(kinds) > 1 or "bool" in kinds:
                self.tag = new_vreg(name + ".t")
            if "int" in kinds:
                self.payload = new_vreg(name)

    def read(self) -> Val:
        if self.const is not None:
            return self.const
        if self.tag is not None:
            tag = self.tag
        else:
            tag = INT if "int" in self.kinds else NIL
        return Val(tag, self.payload if self.payload is not None else 0, self.kinds, self.range)

    def registers(self) -> list[VReg]:
        return [r for r in (self.tag, self.payload) if r is not None]
