"""Maps of kernel Lua (`map.hash/lru/array/percpu_hash/percpu_array`, `m[k]`, `m[k] = v`,
`m[k] = nil`, `map.add`), judged in the kernel against a Lua 5.4 model of the map
library (lupa), and seen from user space through `LoadedProgram.maps` and `.globals`.

The model (MODEL below) is ordinary Lua: each map is a table with a metatable. A hash
map holds at most n keys (a new key into a full map is dropped and the drop counted
at its line); an array map has keys 0..n-1, zero until stored, reads outside give nil
and stores outside are dropped; an lru map has no capacity (the tests give it a big
n); `map.add(m, k, n)` is `m[k] = (m[k] or 0) + n`. The kernel must agree with it on
the values the function returns, its runtime error (message and line), the final
contents of every map (read back through `MapView`) and the drops counted per line.
"""
from __future__ import annotations

import errno
import os
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lupa import lua54

import luabpf
from luabpf import api
from luabpf.compiler.front.luaint import MAXINT, MININT
from luabpf.runtime import kernel
from luabpf.runtime.errors import BpfError

pytestmark = pytest.mark.kernel

FILE = "t.lua"

# ---- the Lua 5.4 model of kernel Lua's map library -----------------------------------

MODEL = r"""
map = {}
MODEL_DROPS = {}                  -- line -> {count =, map = name}
local STATE = {}                  -- map -> {kind, n, array, store, count}

local function name_of(m)
  for k, v in pairs(_G) do if rawequal(v, m) then return k end end
  return "?"
end

local function fail(line, msg) error(("t.lua:%d: %s"):format(line, msg), 0) end

local function check_key(m, k, line)
  if math.type(k) ~= "integer" then
    fail(line, ("map keys are integers in kernel Lua (got a %s key for '%s')"):format(type(k), name_of(m)))
  end
end

local function count_drop(m, line)
  local d = MODEL_DROPS[line]
  if d == nil then d = {count = 0, map = name_of(m)}; MODEL_DROPS[line] = d end
  d.count = d.count + 1
end

local function get(m, k)
  local s = STATE[m]
  if s.array then
    if k >= 0 and k < s.n then return s.store[k] or 0 end
    return nil
  end
  return s.store[k]
end

local function put(m, k, v, line)
  local s = STATE[m]
  if s.array then
    if k >= 0 and k < s.n then s.store[k] = v else count_drop(m, line) end
  elseif s.store[k] ~= nil then
    s.store[k] = v
  elseif s.kind == "lru" or s.count < s.n then
    s.store[k] = v; s.count = s.count + 1
  else
    count_drop(m, line)
  end
end

local function delete(m, k)
  local s = STATE[m]
  if s.store[k] ~= nil then s.store[k] = nil; s.count = s.count - 1 end
end

local META = {
  __index = function(m, k)
    check_key(m, k, debug.getinfo(2, "l").currentline)
    return get(m, k)
  end,
  __newindex = function(m, k, v)
    local line = debug.getinfo(2, "l").currentline
    check_key(m, k, line)
    if v == nil then
      if STATE[m].array then
        fail(line, ("'%s' is an array map: its entries cannot be deleted (store 0)"):format(name_of(m)))
      end
      delete(m, k)
    elseif math.type(v) ~= "integer" then
      fail(line, ("map values are integers in kernel Lua (got a %s value for '%s')"):format(type(v), name_of(m)))
    else
      put(m, k, v, line)
    end
  end,
}

for _, kind in ipairs({"hash", "lru", "array", "percpu_hash", "percpu_array"}) do
  map[kind] = function(n)
    local m = {}
    STATE[m] = {kind = kind, n = n, array = kind == "array" or kind == "percpu_array",
                store = {}, count = 0}
    return setmetatable(m, META)
  end
end

function map.add(m, k, n)
  local line = debug.getinfo(2, "l").currentline
  check_key(m, k, line)
  if math.type(n) ~= "integer" then
    fail(line, ("bad argument #3 to 'add' (number expected, got %s)"):format(type(n)))
  end
  local old = get(m, k)
  put(m, k, (old or 0) + n, line)
end

function MODEL_DUMP(m)            -- what user space would see: every key and its value
  local s, out = STATE[m], {}
  if s.array then
    for k = 0, s.n - 1 do out[k] = s.store[k] or 0 end
  else
    for k, v in pairs(s.store) do out[k] = v end
  end
  return out
end
"""


def model_run(source: str, name: str, args, map_names):
    """Lua 5.4 running `source` over the model: (outcome, contents by map, drops by line)."""
    lua = lua54.LuaRuntime(unpack_returned_tuples=True)
    lua.execute(MODEL)
    lua.execute(source)
    g = lua.globals()
    try:
        outcome = ("ok", g[name](*args))
    except lua54.LuaError as e:
        outcome = ("error", str(e).split("\n")[0])     # without lupa's traceback
    contents = {m: dict(g.MODEL_DUMP(g[m]).items()) for m in map_names}
    drops = {line: (d["map"], d["count"]) for line, d in g.MODEL_DROPS.items()}
    return outcome, contents, drops


# ---- running a loaded function program ------------------------------------------------

def call(prog, loaded, *args):
    """Run the loaded function program once (LoadedProgram.call): what Lua would return,
    or LuaRuntimeError."""
    return loaded.call(*args)


def compile_f(source: str, nargs: int = 1, name: str = "f"):
    return api.compile_function(source, name, ("int",) * nargs, FILE)


DROP_LINE = re.compile(r"^t\.lua:(\d+): (.*) \((\d+) times?\)$")


def drops_of(loaded) -> dict[int, tuple[str, int]]:
    """describe_errors() parsed: line -> (message, count); every line must parse."""
    found: Counter = Counter()
    for text in loaded.describe_errors():
        m = DROP_LINE.match(text)
        assert m, f"describe_errors gave an unexpected line: {text!r}"
        found[(int(m.group(1)), m.group(2))] += int(m.group(3))
    by_line = {}
    for (line, message), n in found.items():
        assert line not in by_line, f"two different drop messages at line {line}"
        by_line[line] = (message, n)
    return by_line


def drop_message(kind: str, name: str, n: int) -> str:
    """The documented words of a dropped store (docs/language.md, "Maps": 'store dropped: …')."""
    if kind in ("array", "percpu_array"):
        return f"store dropped: the key is outside array map '{name}' (keys 0 to {n - 1})"
    return f"store dropped: map '{name}' is full ({n} entries)"


def assert_like_model(source: str, args=(0,), name: str = "f"):
    """The kernel's result, error, map contents and drops equal the model's."""
    prog = api.compile_function(source, name, ("int",) * len(args), FILE)
    decls = prog.compiled.manifest()["maps"]
    want, want_maps, want_drops = model_run(source, name, args, decls)
    with prog.load() as loaded:
        try:
            got = ("ok", call(prog, loaded, *args))
        except luabpf.LuaRuntimeError as e:
            got = ("error", e)
        got_maps = {m: dict(loaded.maps[m]) for m in decls}
        got_drops = drops_of(loaded)
    assert got[0] == want[0], f"kernel {got}, model {want}\n{source}"
    if want[0] == "ok":
        assert got[1] == want[1], f"kernel {got[1]!r}, model {want[1]!r}\n{source}"
        flat_got = got[1] if isinstance(got[1], tuple) else (got[1],)
        flat_want = want[1] if isinstance(want[1], tuple) else (want[1],)
        assert [type(v) for v in flat_got] == [type(v) for v in flat_want]
    else:
        assert f"{FILE}:{got[1].line}: {got[1].message}" == want[1], \
            f"kernel {got[1]}, model {want[1]}\n{source}"
    assert got_maps == want_maps, f"map contents differ\n{source}"
    expected_drops = {line: (drop_message(decls[m]["kind"], m, decls[m]["max_entries"]), n)
                      for line, (m, n) in want_drops.items()}
    assert got_drops == expected_drops, f"drops differ\n{source}"
    return got


# ---- table-driven differential cases ------------------------------------------------

DECLS = """h = map.hash(3)
l = map.lru(1000)
a = map.array(4)
ph = map.percpu_hash(3)
pa = map.percpu_array(4)
function none(z) if z == 0 then return nil end return 1 end
function maybe(z, v) if z == 0 then return v end return nil end
function yes(z) if z == 0 then return true end return 1 end
"""
ALL = ["h", "l", "a", "ph", "pa"]
HASHLIKE = ["h", "l", "ph"]
ARRAYS = ["a", "pa"]


def body(text: str, params: str = "z") -> str:
    return f"{DECLS}function f({params})\n{text}\nend\n"


CASES = [
    # stores and reads, absent keys, overwrites
    *[(f"basic {m}", f"  {m}[1] = 10\n  {m}[2] = -20\n  {m}[1] = {m}[1] + 5\n"
                     f"  return {m}[1], {m}[2], {m}[3], {m}[z + 1]") for m in ALL],
    *[(f"absent {m}", f"  return {m}[0], {m}[z], {m}[-1], {m}[z - 1], {m}[4], {m}[z + 4], "
                      f"{m}[4294967296], {m}[z + 4294967297], {m}[math.mininteger], "
                      f"{m}[math.maxinteger]") for m in ALL],
    # deletes: read back nil, delete absent, reinsert into a full map
    *[(f"delete {m}", f"  {m}[5] = 1\n  {m}[-5] = 2\n  {m}[z + 7] = 3\n  {m}[5] = nil\n"
                      f"  {m}[99] = nil\n  {m}[z + 8] = 4\n  {m}[z - 5] = nil\n  {m}[9] = 5\n"
                      f"  return {m}[5], {m}[-5], {m}[7], {m}[8], {m}[9]") for m in HASHLIKE],
    # a full hash map: new keys dropped (counted per line), existing keys still updated
    *[(f"full {m}", f"  for i = 1, 5 do {m}[i] = i * 100 end\n  {m}[2] = -1\n  {m}[z + 6] = 6\n"
                    f"  {m}[z + 3] = 33\n  {m}[7] = 7\n  return {m}[1], {m}[2], {m}[3], {m}[4], {m}[6]")
      for m in ("h", "ph")],
    # arrays: out-of-range stores dropped, u32 truncation must not alias entry 1
    *[(f"array range {m}", f"  {m}[z + 4294967297] = 9\n  {m}[4294967297] = 8\n  {m}[-1] = 7\n"
                           f"  {m}[z - 1] = 6\n  {m}[4] = 5\n  {m}[z + 3] = 4\n"
                           f"  return {m}[1], {m}[3], {m}[z + 4294967297]") for m in ARRAYS],
    # map.add: absent counts as 0, wraps like Lua's +, drops like a store
    *[(f"add {m}", f"  map.add({m}, 1, 5)\n  map.add({m}, z + 1, -7)\n  map.add({m}, 2, math.maxinteger)\n"
                   f"  map.add({m}, 2, z + 1)\n  map.add({m}, 3, math.mininteger)\n  map.add({m}, 3, -1)\n"
                   f"  map.add({m}, z + 9, 1)\n  map.add({m}, -1, 1)\n"
                   f"  return {m}[1], {m}[2], {m}[3], {m}[9], {m}[-1]") for m in ALL],
    *[(f"add into full {m}", f"  {m}[1] = 1\n  {m}[2] = 2\n  {m}[3] = 3\n  map.add({m}, 4, 1)\n"
                             f"  map.add({m}, z + 4, 1)\n  map.add({m}, 2, 40)\n  return {m}[2], {m}[4]")
      for m in ("h", "ph")],
    ("counters in a loop", "  for i = 1, 30 do map.add(h, i % 3, i) map.add(a, i % 6, 1) end\n"
                           "  return h[0], h[1], h[2], a[0], a[5]"),
    ("read-modify-write", "  for i = 1, 4 do l[i % 2] = (l[i % 2] or 0) + i end\n  return l[0], l[1]"),
    ("dynamic nil or value stores", "  h[1] = maybe(z, 5)\n  h[2] = 6\n  h[2] = none(z)\n"
                                    "  a[1] = maybe(z, 7)\n  return h[1], h[2], a[1]"),
    ("maps under other names", "  local x = h\n  x[1] = 4\n  return h[1]"),
    # runtime errors: the kind only known at run time
    ("dynamic nil into an array", "  a[1] = 3\n  a[1] = none(z)\n  return a[1]"),
    ("dynamic nil into a percpu array", "  pa[2] = none(z)\n  return 1"),
    ("dynamic boolean key store", "  h[1] = 1\n  h[yes(z)] = 1\n  return 1"),
    ("dynamic boolean key read", "  return h[yes(z)]"),
    ("dynamic boolean value", "  h[1] = yes(z)\n  return h[1]"),
    ("dynamic boolean add", "  map.add(h, 1, 1)\n  map.add(h, 1, yes(z))\n  return h[1]"),
    ("dynamic boolean add key", "  map.add(a, yes(z), 1)\n  return 1"),
]


@pytest.mark.parametrize("text", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_maps_behave_like_the_lua_model(text):
    assert_like_model(body(text))


def test_model_itself_drops_and_errs():
    """The model is the judge: make sure it is not vacuous (drops, errors, zeros)."""
    src = body("  for i = 1, 5 do h[i] = i end\n  a[7] = 1\n  return h[4], a[0], a[7]")
    outcome, contents, drops = model_run(src, "f", (0,), ["h", "a"])
    assert outcome == ("ok", (None, 0, None))
    assert contents == {"h": {1: 1, 2: 2, 3: 3}, "a": {0: 0, 1: 0, 2: 0, 3: 0}}
    assert drops == {10: ("h", 2), 11: ("a", 1)}
    outcome, _, _ = model_run(body("  a[1] = none(z)"), "f", (0,), ["a"])
    assert outcome == ("error", "t.lua:10: 'a' is an array map: its entries cannot be deleted (store 0)")


# ---- generated sequences of operations ------------------------------------------------

KEYS = [-2, -1, 0, 1, 2, 3, 4, 5, 1 << 32, (1 << 32) + 1, MAXINT, MININT]
SPECIAL = [0, 1, -1, 2, MAXINT, MININT, MAXINT - 1, MININT + 1]
VALUES = st.one_of(st.sampled_from(SPECIAL), st.integers(MININT, MAXINT))
OPS = ["set"] * 4 + ["get"] * 4 + ["add"] * 3 + ["del"] * 2 + ["maybe", "none"]


def lit(n: int, dynamic: bool) -> str:
    text = {MAXINT: "math.maxinteger", MININT: "math.mininteger"}.get(n, str(n))
    if n < 0 and text == str(n):
        text = f"({text})"
    return f"(z + {text})" if dynamic else text


def render(ops) -> str:
    lines, gets = [], []
    for op, m, k, v, dk, dv in ops:
        key, val = lit(k, dk), lit(v, dv)
        if op == "del" and m in ARRAYS:
            op = "set"
        if op == "set":
            lines.append(f"  {m}[{key}] = {val}")
        elif op == "del":
            lines.append(f"  {m}[{key}] = nil")
        elif op == "maybe":
            lines.append(f"  {m}[{key}] = maybe(z, {val})")
        elif op == "none":
            lines.append(f"  {m}[{key}] = none(z)")
        elif op == "add":
            lines.append(f"  map.add({m}, {key}, {val})")
        else:
            g = f"g{len(gets)}"
            gets.append(g)
            lines.append(f"  local {g} = {m}[{key}]")
    if gets:
        lines.append(f"  return {', '.join(gets)}")
    return "\n".join(lines)


def op_strategy(maps):
    return st.tuples(st.sampled_from(OPS), st.sampled_from(maps), st.sampled_from(KEYS), VALUES,
                     st.booleans(), st.booleans())


@settings(max_examples=150, deadline=None)
@given(st.lists(op_strategy(ALL), min_size=1, max_size=12))
def test_generated_operation_sequences_match_the_model(ops):
    assert_like_model(body(render(ops)))


@settings(max_examples=100, deadline=None)
@given(st.lists(op_strategy(["h", "a"]), min_size=4, max_size=14))
def test_generated_sequences_on_a_small_hash_and_array(ops):
    """Two maps only, so the 3-entry hash map fills and empties often."""
    assert_like_model(body(render(ops)))


# ---- user space and the program on the same maps -------------------------------------

KINDS = [("hash", 8), ("lru", 1000), ("array", 8), ("percpu_hash", 8), ("percpu_array", 8)]


@pytest.mark.parametrize("kind,n", KINDS)
def test_user_space_writes_and_the_program_reads(kind, n):
    prog = compile_f(f"m = map.{kind}({n})\nfunction f(k) return m[k] end")
    with prog.load() as L:
        def run(k):
            # a per-CPU store from user space lands on CPU 0: the program reads it there
            if kind.startswith("percpu"):
                return _run_on(0, lambda: call(prog, L, k))
            return call(prog, L, k)
        view = L.maps["m"]
        view[3] = 42
        view[5] = MININT
        view[3] = view[3] + 1
        assert run(3) == 43
        assert run(5) == MININT
        absent = 0 if kind.endswith("array") else None
        assert run(4) == absent
        assert run(-1) is None
        assert run(n) is None                      # outside an array; absent from a hash
        if kind.endswith("array"):
            assert len(view) == n and view[4] == 0
        else:
            assert sorted(view) == [3, 5] and len(view) == 2
            with pytest.raises(KeyError):
                view[4]
        assert 3 in view and -1 not in view


@pytest.mark.parametrize("kind,n", KINDS)
def test_the_program_writes_and_user_space_reads(kind, n):
    prog = compile_f(f"m = map.{kind}({n})\n"
                     "function f(k) m[k] = k * k - 1; map.add(m, k + 1, k) end")
    with prog.load() as L:
        for k in (1, 3, 6):
            assert call(prog, L, k) is None
        view = L.maps["m"]
        # the program ran 1, 3, 6: m[k] = k*k - 1, then m[k+1] += k (a later store wins)
        want = {}
        for k in (1, 3, 6):
            want[k] = k * k - 1
            want[k + 1] = want.get(k + 1, 0) + k
        if kind.endswith("array"):
            want = {k: want.get(k, 0) for k in range(n)}
        assert dict(view) == want
        assert view.busiest(2) == sorted(want.items(), key=lambda kv: (-kv[1], kv[0]))[:2]


def _run_on(cpu: int, fn):
    """Run fn with this thread pinned to one CPU (BPF_PROG_TEST_RUN of a syscall program
    runs on the calling CPU), then restore the affinity."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        return fn()
    finally:
        os.sched_setaffinity(0, before)


@pytest.mark.parametrize("kind", ["percpu_hash", "percpu_array"])
def test_percpu_maps_sum_over_cpus(kind):
    prog = compile_f(f"p = map.{kind}(4)\nfunction f(k, n) map.add(p, k, n) return p[k] end", 2)
    ncpu = kernel.possible_cpus()
    with prog.load() as L:
        view = L.maps["p"]
        # unpinned: whichever CPU the runs land on, the sum is what was added
        for n in range(1, 11):
            call(prog, L, 1, n)
        assert view[1] == 55
        assert len(view.per_cpu(1)) == ncpu and sum(view.per_cpu(1)) == 55
        assert all(v >= 0 for v in view.per_cpu(1))
        # pinned: each CPU sees its own value
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            pytest.skip("pinning to two CPUs needs two usable CPUs")
        c0, c1 = cpus[0], cpus[1]
        assert _run_on(c0, lambda: call(prog, L, 2, 5)) == 5
        assert _run_on(c1, lambda: call(prog, L, 2, 7)) == 7
        assert _run_on(c0, lambda: call(prog, L, 2, 1)) == 6
        per = view.per_cpu(2)
        assert per[c0] == 6 and per[c1] == 7 and sum(per) == 13 and view[2] == 13
        # a store from user space puts the value on CPU 0 and zero elsewhere
        view[3] = 100
        assert view.per_cpu(3) == [100] + [0] * (ncpu - 1)
        assert _run_on(0, lambda: call(prog, L, 3, 0)) == 100
        other = next(c for c in cpus if c != 0)
        assert _run_on(other, lambda: call(prog, L, 3, 1)) == 1
        assert view[3] == 101
        # the sum wraps as Lua's + does
        view[0] = MAXINT
        _run_on(other, lambda: call(prog, L, 0, 1))
        assert view[0] == MININT


def test_user_space_deletes_and_the_program_sees_nil():
    prog = compile_f("h = map.hash(4)\nfunction f(k) return h[k] end")
    with prog.load() as L:
        h = L.maps["h"]
        h[1], h[2] = 10, 20
        del h[1]
        assert call(prog, L, 1) is None and call(prog, L, 2) == 20
        assert dict(h) == {2: 20}
        with pytest.raises(KeyError):
            del h[1]
        h.clear()
        assert call(prog, L, 2) is None and len(h) == 0


def test_array_maps_refuse_deletes_and_keys_outside_from_user_space():
    prog = compile_f("a = map.array(4)\nfunction f(k) return a[k] end")
    with prog.load() as L:
        a = L.maps["a"]
        a[3] = 9
        with pytest.raises(TypeError, match="array map"):
            del a[3]
        with pytest.raises(KeyError):
            a[4] = 1
        with pytest.raises(KeyError):
            a[-1]
        with pytest.raises(TypeError):
            a[1] = True
        with pytest.raises(TypeError):
            a[True] = 1
        with pytest.raises(ValueError):
            a[1] = 1 << 63
        assert call(prog, L, 3) == 9 and dict(a) == {0: 0, 1: 0, 2: 0, 3: 9}


def test_a_full_map_drops_program_stores_and_refuses_user_inserts():
    src = "h = map.hash(3)\nfunction f(k)\n  h[k] = k\n  map.add(h, k + 100, 1)\n  return h[k]\nend"
    prog = compile_f(src)
    with prog.load() as L:
        h = L.maps["h"]
        assert call(prog, L, 1) == 1           # h = {1, 101}
        assert call(prog, L, 2) == 2           # h = {1, 101, 2}; the add of 102 is dropped
        assert call(prog, L, 5) is None        # both dropped
        assert call(prog, L, 6) is None        # both dropped
        assert call(prog, L, 1) == 1           # existing keys still update; 101 += 1
        assert dict(h) == {1: 1, 101: 2, 2: 2}
        assert L.describe_errors() == [
            "t.lua:3: store dropped: map 'h' is full (3 entries) (2 times)",
            "t.lua:4: store dropped: map 'h' is full (3 entries) (3 times)",
        ]
        with pytest.raises(BpfError) as e:
            h[7] = 7
        assert e.value.errno == errno.E2BIG
        assert "'h' is full" in str(e.value) and "3 entries" in str(e.value)
        h[2] = 22                              # updating an existing key is fine
        assert dict(h) == {1: 1, 101: 2, 2: 22}
        del h[101]                             # room again: the program's store lands
        assert call(prog, L, 5) == 5
        assert dict(h) == {1: 1, 2: 22, 5: 5}
        assert L.describe_errors()[1].endswith("(4 times)")   # the add of 105 was dropped


def test_array_stores_outside_are_counted():
    src = "a = map.array(2)\nfunction f(k)\n  a[k] = 1\n  map.add(a, k, 1)\n  return a[k]\nend"
    prog = compile_f(src)
    with prog.load() as L:
        assert [call(prog, L, k) for k in (0, 1, 2, -1, 1 << 32)] == [2, 2, None, None, None]
        assert L.describe_errors() == [
            "t.lua:3: store dropped: the key is outside array map 'a' (keys 0 to 1) (3 times)",
            "t.lua:4: store dropped: the key is outside array map 'a' (keys 0 to 1) (3 times)",
        ]


def test_an_lru_map_evicts_and_never_drops():
    src = ("l = map.lru(16)\nlost = 0\nfunction f(k)\n  for i = 1, 1000 do\n    l[k + i] = i\n"
           "    if l[k + i] ~= i then lost = lost + 1 end\n  end\n  return lost\nend")
    prog = compile_f(src)
    with prog.load() as L:
        cpus = sorted(os.sched_getaffinity(0))
        for run in range(6):
            cpu = cpus[run % len(cpus)]
            assert _run_on(cpu, lambda: call(prog, L, run * 1000)) == 0   # a store reads back
        view = L.maps["l"]
        assert 0 < len(view) <= 16
        assert all((k - 1) % 1000 + 1 == v for k, v in view.items())    # only what was stored
        assert L.describe_errors() == []                                 # eviction, no drops
        assert L.globals["lost"] == 0


# ---- globals, live ----------------------------------------------------------------------

GLOBALS = """limit = 10
on = true
runs = 0
function f(x)
  runs = runs + 1
  if on and x > limit then return x, runs end
  return nil, runs
end
"""


def test_globals_changed_from_user_space_are_seen_by_the_next_run():
    prog = compile_f(GLOBALS)
    with prog.load() as L:
        g = L.globals
        assert dict(g) == {"limit": 10, "on": True, "runs": 0}
        assert call(prog, L, 5) == (None, 1)
        g["limit"] = 3
        assert call(prog, L, 5) == (5, 2)
        g["on"] = False
        assert g["on"] is False
        assert call(prog, L, 5) == (None, 3)
        g["on"] = True
        g["limit"] = MININT
        assert call(prog, L, MININT + 1) == (MININT + 1, 4)
        assert g["runs"] == 4                  # the program's stores are seen, too
        g["runs"] = MAXINT
        assert call(prog, L, 0) == (0, MININT)     # and it carries on from ours (wrapping)
        assert g["runs"] == MININT


def test_globals_are_type_checked_and_named():
    prog = compile_f(GLOBALS)
    with prog.load() as L:
        g = L.globals
        with pytest.raises(TypeError, match="'limit' holds integers"):
            g["limit"] = True
        with pytest.raises(TypeError, match="'on' holds booleans"):
            g["on"] = 1
        with pytest.raises(TypeError):
            g["limit"] = "5"
        with pytest.raises(ValueError):
            g["limit"] = 1 << 63
        with pytest.raises(KeyError) as e:
            g["limt"] = 3
        assert "limt" in str(e.value) and "limit, on, runs" in str(e.value)
        with pytest.raises(KeyError, match="limit, on, runs"):
            g["nope"]
        with pytest.raises(TypeError):
            del g["limit"]
        assert dict(g) == {"limit": 10, "on": True, "runs": 0}     # nothing changed
        assert call(prog, L, 11) == (11, 1)


def test_a_program_without_globals_has_an_empty_view():
    prog = compile_f("h = map.hash(2)\nfunction f(k) return k end")
    with prog.load() as L:
        assert dict(L.globals) == {}
        with pytest.raises(KeyError, match="none"):
            L.globals["x"] = 1
        assert list(L.maps) == ["h"]
