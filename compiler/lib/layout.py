"""Layouts (Luadata's `data.layout{ name = {bit_offset, bit_width}, … }`).

Owns the `Layout` record — named bit fields of a view — built from a table
constructor at compile time, and the stdlib's own header layouts read from
stdlib/net.lua (written in kernel Lua, so users define theirs the same way).
Reading a field from memory is `views`' job.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from luabpf import stdlib
from luabpf.compiler.front import ast
from luabpf.compiler.front.parser import parse


@dataclass(frozen=True)
class Field:
    name: str
    bit_offset: int
    bit_width: int
    is_string: bool = False
    reg: object = field(default=None, compare=False)     # a computed field (hdr.ip6.proto): its
                                                         # register in the entry function, like hdr's

    @property
    def byte_start(self) -> int:
        return self.bit_offset // 8

    @property
    def byte_end(self) -> int:
        return (self.bit_offset + self.bit_width + 7) // 8


@dataclass(eq=False)
class Layout:
    name: str
    fields: dict[str, Field]

    @property
    def size(self) -> int:
        """Bytes up to the end of the last field."""
        return max((f.byte_end for f in self.fields.values()), default=0)


class LayoutError(Exception):
    def __init__(self, node, message: str):
        self.node, self.message = node, message
        super().__init__(message)


def _int(node) -> int:
    if isinstance(node, ast.Int):
        return node.value
    if isinstance(node, ast.UnOp) and node.op == "-" and isinstance(node.operand, ast.Int):
        return -node.operand.value
    raise LayoutError(node, "a layout field's offset and width must be integer constants")


def layout_from_table(table: ast.Table, name: str = "layout") -> Layout:
    fields: dict[str, Field] = {}
    for f in table.fields:
        if not f.named or not isinstance(f.key, ast.String):
            raise LayoutError(f, "a layout field is written name = {bit_offset, bit_width}")
        fname = f.key.value.decode()
        spec = f.value
        if not isinstance(spec, ast.Table) or not 2 <= len(spec.fields) <= 3 \
                or any(x.named for x in spec.fields):
            raise LayoutError(f.value, f"field '{fname}': write {{bit_offset, bit_width}}")
        offset, width = _int(spec.fields[0].value), _int(spec.fields[1].value)
        is_string = False
        if len(spec.fields) == 3:
            kind = spec.fields[2].value
            if not (isinstance(kind, ast.String) and kind.value in (b"string", b"number")):
                raise LayoutError(kind, f"field '{fname}': the third entry is \"number\" or \"string\"")
            is_string = kind.value == b"string"
        if offset < 0 or width <= 0:
            raise LayoutError(spec, f"field '{fname}': offset must be >= 0 and width > 0")
        if is_string and (offset % 8 or width % 8):
            raise LayoutError(spec, f"field '{fname}': a string field must start and end on a byte")
        if not is_string and width > 64:
            raise LayoutError(spec, f"field '{fname}': an integer field has at most 64 bits "
                                    "(make it a \"string\" field)")
        fields[fname] = Field(fname, offset, width, is_string)
    return Layout(name, fields)


@functools.cache
def stdlib_layouts() -> dict[str, Layout]:
    """The header layouts of stdlib/net.lua, by name (eth, vlan, ip, ip6, frag6, tcp, udp, icmp)."""
    chunk = parse(stdlib.source("net.lua"), "stdlib/net.lua")
    layouts = {}
    for st in chunk.body.stmts:
        assert isinstance(st, ast.Assign) and isinstance(st.values[0], ast.Call), "net.lua: layouts only"
        name = st.targets[0].name
        layouts[name] = layout_from_table(st.values[0].args[0], name)
    return layouts
