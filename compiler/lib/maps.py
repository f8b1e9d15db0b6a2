"""Maps of kernel Lua: `map.hash(n)` and its kin, `m[k]`, `m[k] = v`, `map.add`.

Owns the map declarations a script makes at top level (`MapDecl`: kind, size and
the script's name for it, which is also the name user space knows it by) and
the code of element access. Keys and values are 64-bit integers.

Decisions (docs/language.md, "Maps"):
- `m[k]` is nil when the key is absent; an array map has every key 0..n-1, each 0
  until stored, and nil outside that range.
- `m[k] = v` stores; `m[k] = nil` deletes. A store the kernel refuses (a full hash
  map, a key outside an array map) is dropped: the script goes on, `m[k]` stays
  what it was, and the drop is counted at its line like a runtime error.
- Array maps cannot delete: `m[k] = nil` on one is an error.
- `map.add(m, k, n)` adds n to m[k] (absent counts as 0) atomically, so counters
  shared by CPUs lose nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

from luabpf.compiler import ir
from luabpf.compiler.bpf.helpers import Helper
from luabpf.compiler.bpf.uapi import BPF_ANY, BPF_NOEXIST, MapType
from luabpf.compiler.front import ast
from luabpf.compiler.front.source import Span
from luabpf.compiler.lower.values import INT, NIL, Val, type_name

KINDS = {"hash": int(MapType.HASH), "array": int(MapType.ARRAY),
         "percpu_hash": int(MapType.PERCPU_HASH), "percpu_array": int(MapType.PERCPU_ARRAY),
         "lru": int(MapType.LRU_HASH)}
MAX_ENTRIES = 1 << 24
RESERVED_PREFIX = "luabpf_"       # the names of the maps every program may have
LIBRARY_FILES = "<luabpf>/"       # luabpf's own kernel Lua (stdlib/cpufreq.lua) may use them


@dataclass(eq=False)
class MapDecl:
    kind: str                 # a key of KINDS
    max_entries: int
    span: Span
    name: str | None = None   # the script's name for it, given when it is bound at top level
    value_size: int = 8       # an integer; luabpf's own maps may hold records
    flags: int = 0            # BPF_MAP_CREATE flags (luabpf's own maps: BPF_F_MMAPABLE)

    @property
    def type(self) -> int:
        return KINDS[self.kind]

    @property
    def is_array(self) -> bool:
        return self.kind in ("array", "percpu_array")

    @property
    def key_size(self) -> int:
        return 4 if self.is_array else 8       # the kernel's array maps take u32 keys

    @property
    def per_cpu(self) -> bool:
        return self.kind.startswith("percpu")

    def index(self, lw, key: str, node) -> Val:
        """m.name: maps are indexed by integers, never by field names."""
        lw.error(node, f"map keys are integers in kernel Lua: write {self.name}[k], not "
                       f"{self.name}.{key}")
        return Val.nil()


def decl_of(v: Val) -> MapDecl | None:
    return v.obj if "obj" in v.kinds and isinstance(v.obj, MapDecl) else None


def bind(lw, name: str, v: Val) -> None:
    """A top-level `name = map.kind(n)`: the map is known by `name` from now on."""
    decl = decl_of(v)
    if decl is not None and decl.name is None:
        if name.startswith(RESERVED_PREFIX) and not decl.span.file.startswith(LIBRARY_FILES):
            # the program's own maps (globals, error counts, the print ring buffer) have
            # these names: a script's map of the same name would take their place
            lw.diags.error(decl.span, f"'{name}': names starting with {RESERVED_PREFIX} are "
                                      "luabpf's own maps; choose another name")
        decl.name = name
        lw.maps[name] = decl


def declare(kind: str):
    """The lowering of `map.KIND(n)`: a map of n entries, declared at top level."""
    def lower(lw, args, node, scope):
        if lw.instances:
            lw.error(node, f"maps are declared at top level: name = map.{kind}(n)")
            return [Val.nil()]
        n = args[0] if len(args) == 1 else None
        if n is None or not (n.is_const and n.is_int) or not 1 <= n.payload <= MAX_ENTRIES:
            lw.error(node, f"map.{kind} takes its number of entries, a constant from 1 to "
                           f"{MAX_ENTRIES}")
            # still a map, so the global it is bound to raises no second, misleading error
            return [Val.object(MapDecl(kind, 1, node.span))]
        return [Val.object(MapDecl(kind, n.payload, node.span))]
    return lower


# ---- element access -------------------------------------------------------------------

def _key(lw, decl: MapDecl, key: Val, node):
    """The key's integer, or a compile error when it can never be one."""
    if "int" not in key.kinds:
        lw.error(node, f"map keys are integers in kernel Lua; this key is a {type_name(key.kinds)}")
        return None
    return lw.int_operand(key, node, lambda got: f"map keys are integers in kernel Lua "
                                                 f"(got a {got} key for '{decl.name}')")


def _key_addr(lw, decl: MapDecl, k) -> tuple[ir.VReg, ir.VReg]:
    """(map, &key) for a helper call, the key stored in the shared key slot."""
    b = lw.b
    slot = lw.scratch(8, "map_key")
    b.emit(ir.Store(decl.key_size, slot, 0, b.small(k)))
    m, kp = b.vreg("map"), b.vreg("key")
    b.emit(ir.LoadMap(m, decl.name))
    b.emit(ir.SlotAddr(kp, slot))
    return m, kp


def _outside(lw, decl: MapDecl, k, outside: ir.Block) -> None:
    """Branch to `outside` when k is not a key of an array map (which takes u32 keys: a
    key of 2^32 + 1 must not reach entry 1)."""
    if not decl.is_array:
        return
    b = lw.b
    if isinstance(k, int):
        if 0 <= k < decl.max_entries:
            return
        b.jump(outside)
        b.start(b.block("dead"))
        return
    inside = b.block("key_inside")
    b.branch("ge", k, decl.max_entries, outside, inside)
    b.start(inside)


def lookup(lw, decl: MapDecl, k) -> ir.VReg:
    """The address of m[k]'s value, 0 when k is absent (or outside an array)."""
    b = lw.b
    if decl.is_array and not (isinstance(k, int) and 0 <= k < decl.max_entries):
        p = b.vreg("elem")
        b.mov(p, 0)
        inside, done = b.block("key_inside"), b.block("looked_up")
        b.branch("ge", b.reg(k), decl.max_entries, done, inside)
        b.start(inside)
        b.mov(p, _lookup(lw, decl, k))
        b.jump(done)
        b.start(done)
        return p
    return _lookup(lw, decl, k)


def _lookup(lw, decl: MapDecl, k) -> ir.VReg:
    """A pointer to m[k]'s value, 0 when absent."""
    m, kp = _key_addr(lw, decl, k)
    p = lw.b.vreg("elem")
    lw.b.emit(ir.Call(Helper.map_lookup_elem, [m, kp], p))
    return p


def read(lw, decl: MapDecl, key: Val, node) -> Val:
    """m[k]: the integer stored, or nil."""
    k = _key(lw, decl, key, node)
    if k is None:
        return Val.nil()
    b = lw.b
    found, absent, done = b.block("map_found"), b.block("map_absent"), b.block("map_read")
    tag, payload = b.vreg(f"{decl.name}[k].t"), b.vreg(f"{decl.name}[k]")
    _outside(lw, decl, k, absent)
    p = _lookup(lw, decl, k)
    b.branch("eq", p, 0, absent, found)
    b.start(found)
    b.emit(ir.Load(8, payload, p, 0))
    b.mov(tag, INT)
    b.jump(done)
    b.start(absent)
    b.mov(payload, 0)
    b.mov(tag, NIL)
    b.jump(done)
    b.start(done)
    return Val(tag, payload, frozenset({"nil", "int"}))


def store_handler(lw, target, scope):
    """The store of `m[k] = v` when target's object is a map, else None."""
    if not isinstance(target, ast.Index):
        return None
    obj = lw.expr(target.obj, scope)
    decl = decl_of(obj)
    if decl is None:
        return None
    if isinstance(target.key, ast.String) and target.dot:
        return lambda v: decl.index(lw, target.key.value.decode(), target)
    key = lw.expr(target.key, scope)
    return lambda v: write(lw, decl, key, v, target)


def write(lw, decl: MapDecl, key: Val, v: Val, node) -> None:
    """m[k] = v (v an integer) or m[k] = nil (a delete)."""
    if not lw.b.reachable:
        return
    if not v.kinds & {"nil", "int"}:
        lw.error(node, f"map values are integers in kernel Lua; this value is a {type_name(v.kinds)}")
        return
    if v.kinds == frozenset({"nil"}) and decl.is_array:
        lw.error(node, f"'{decl.name}' is an array map: its entries cannot be deleted (store 0)")
        return
    k = _key(lw, decl, key, node)
    if k is None:
        return
    b = lw.b
    if v.kinds == frozenset({"nil"}):
        _delete(lw, decl, k)
        return
    done = b.block("map_stored")
    if "nil" in v.kinds:
        is_nil, not_nil = b.block("store_nil"), b.block("store_value")
        b.branch("eq", v.tag, NIL, is_nil, not_nil)
        b.start(is_nil)
        if decl.is_array:
            lw.runtime_error(node.span, f"'{decl.name}' is an array map: its entries cannot be "
                                        "deleted (store 0)")
        else:
            _delete(lw, decl, k)
            b.jump(done)
        b.start(not_nil)
    x = lw.int_operand(v, node, lambda got: f"map values are integers in kernel Lua (got a {got} "
                                            f"value for '{decl.name}')")
    _update(lw, decl, k, x, BPF_ANY, node)
    b.jump(done)
    b.start(done)


def _delete(lw, decl: MapDecl, k) -> None:
    m, kp = _key_addr(lw, decl, k)
    lw.b.emit(ir.Call(Helper.map_delete_elem, [m, kp], lw.b.vreg("deleted")))


def _update(lw, decl: MapDecl, k, x, flags: int, node, on_fail=None) -> None:
    """map_update_elem(m, &k, &x, flags); a refusal runs on_fail, or is counted as a drop."""
    b = lw.b
    refused, ok = b.block("map_refused", cold=True), b.block("map_ok")
    _outside(lw, decl, k, refused)
    if decl.is_array:
        # every key of an array exists: store through the value's address (the verifier
        # inlines an array lookup; an update would be a helper call)
        p = _lookup(lw, decl, k)
        found = b.block("array_store")
        b.branch("eq", p, 0, refused, found)
        b.start(found)
        b.emit(ir.Store(8, p, 0, b.small(x)))
        b.jump(ok)
        b.start(refused)
        lw.count_at(node.span, _drop_message(decl))
        b.jump(ok)
        b.start(ok)
        return
    value = lw.scratch(8, "map_value")
    b.emit(ir.Store(8, value, 0, b.small(x)))
    m, kp = _key_addr(lw, decl, k)
    vp, r = b.vreg("value"), b.vreg("stored")
    b.emit(ir.SlotAddr(vp, value))
    b.emit(ir.Call(Helper.map_update_elem, [m, kp, vp, flags], r))
    b.branch("ne", r, 0, refused, ok)
    b.start(refused)
    if on_fail is not None:
        on_fail()
    else:
        lw.count_at(node.span, _drop_message(decl))
    b.jump(ok)
    b.start(ok)


def _drop_message(decl: MapDecl) -> str:
    if decl.is_array:
        return (f"store dropped: the key is outside array map '{decl.name}' "
                f"(keys 0 to {decl.max_entries - 1})")
    return f"store dropped: map '{decl.name}' is full ({decl.max_entries} entries)"


def add_call(lw, args, node, scope):
    """map.add(m, k, n): m[k] = (m[k] or 0) + n, atomically."""
    decl = decl_of(args[0]) if args else None
    if decl is None or len(args) != 3:
        lw.error(node, "map.add takes a map, a key and an integer: map.add(m, k, n)")
        return []
    add(lw, decl, args[1], args[2], node)
    return []


def add(lw, decl: MapDecl, key: Val, amount: Val, node) -> None:
    """m[k] = (m[k] or 0) + amount, atomically."""
    k = _key(lw, decl, key, node)
    if k is None:
        return
    n = lw.b.reg(lw.int_operand(amount, node, lambda got: f"bad argument #3 to 'add' "
                                                          f"(number expected, got {got})"))
    b = lw.b
    done = b.block("add_done")

    def add_where_found(p, absent: ir.Block) -> None:
        found = b.block("add_found")
        b.branch("eq", p, 0, absent, found)
        b.start(found)
        b.emit(ir.AtomicAdd(8, p, 0, n))
        b.jump(done)

    absent = b.block("add_absent", cold=decl.is_array)
    if decl.is_array:                        # every key inside exists: absent means outside
        _outside(lw, decl, k, absent)
        add_where_found(_lookup(lw, decl, k), absent)
        b.start(absent)
        lw.count_at(node.span, _drop_message(decl))
        b.jump(done)
        b.start(done)
        return
    add_where_found(_lookup(lw, decl, k), absent)
    b.start(absent)

    def raced() -> None:                     # another CPU inserted it first, or the map is full
        full = b.block("add_full")
        add_where_found(_lookup(lw, decl, k), full)
        b.start(full)
        lw.count_at(node.span, _drop_message(decl))
    _update(lw, decl, k, n, BPF_NOEXIST, node, on_fail=raced)
    b.jump(done)
    b.start(done)
