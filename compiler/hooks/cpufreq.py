"""The CPU-frequency hook: a policy `throttle(cpu, cur, max, min)` (docs/language.md,
"CPU-frequency policies").

Owns the hook record (`ThrottleHook`), what a policy script becomes before it is compiled
(`policy_chunk`, `policy_hooks`: the driver, compiler/program.py, compiles them), and the
policy's library:
`cpufreq.target(cpu, freq, rel)`, `cpufreq.load(cpu)` and `acpi.get_temp(cpu)`.
A policy script becomes two programs sharing one per-CPU record array
(`CPU_MAP`, fields in `FIELDS`):
- `throttle` itself, a perf-event program a per-CPU timer runs each interval. Before
  the script's body, the hook closes the CPU's measurement interval: it adds the idle
  time still running, computes the load, and reads cur, max and min from the record;
- the `sched:sched_switch` tracepoint of stdlib/cpufreq.lua, which times each CPU's
  stays in its idle task (`luabpf.idle_switch`).
One record per CPU, one lookup per call: a policy that runs every 20 ms on an idle
CPU finds cold caches, and one cache-line-sized record is what keeps it cheap.
User space (`runtime/policy.py`) writes cur, min, max and temp and reads the requests.
The compiler reads no tracefs: the runtime hands the tracepoint's fields in.

Decisions (docs/language.md, "CPU-frequency policies"):
- `rel` is a constant, '<=' or '>=' (anything else is a compile error). The request
  lands in the CPU's record; user space resolves it against the available frequencies.
  Only the latest request per CPU and interval counts.
- `cpufreq.load(cpu)` is the percent of that CPU's last interval spent running tasks;
  0 before its second interval. `acpi.get_temp(cpu)` is what user space last read from
  the CPU's thermal zone, in whole degrees Celsius (0 when there is none). A CPU outside
  the records reads 0, and a request for it is dropped and counted.
"""
from __future__ import annotations

from luabpf import stdlib
from luabpf.compiler import ir
from luabpf.compiler.bpf.helpers import Helper
from luabpf.compiler.bpf.uapi import BPF_F_MMAPABLE, ProgType
from luabpf.compiler.front import ast
from luabpf.compiler.front.diagnostics import CompileError, Diagnostic
from luabpf.compiler.front.parser import parse
from luabpf.compiler.front.source import Source, Span
from luabpf.compiler.hooks.base import Environment, Hook, top_functions
from luabpf.compiler.hooks.tracepoint import TraceField, TracepointHook
from luabpf.compiler.lib import maps
from luabpf.compiler.lower.values import Val

STDLIB_FILE = "<luabpf>/stdlib/cpufreq.lua"
RELATIONS = {"<=": 1, ">=": 2}
CPU_MAP = "luabpf_cpufreq"
MAX_CPUS = 1024
# The per-CPU record, 8 bytes a field: written by user space (cur … temp), by the policy
# (target … requests) and by the idle accounting (idle … load).
FIELDS = ("cur", "min", "max", "temp", "target", "relation", "requests",
          "idle", "since", "last", "load")
OFF = {name: 8 * i for i, name in enumerate(FIELDS)}
RECORD_SIZE = 8 * len(FIELDS)


class ThrottleHook(Hook):
    """`throttle(cpu, cur, max, min)`, run by a per-CPU timer (a perf-event program).
    `prog_type` may be another's: bench/policy.py runs throttle as an XDP program, warm,
    a million times with BPF_PROG_TEST_RUN."""
    name = "cpufreq"
    missing = "a cpufreq program needs a function throttle(cpu, cur, max, min)"
    entry = "throttle"
    section = "perf_event"
    params = ("cpu", "cur", "max", "min")
    loop_bound = 1024
    pattern_steps = 1024
    budget = 100_000

    def __init__(self, prog_type: int = ProgType.PERF_EVENT):
        self.prog_type = prog_type
        self.args: list[ir.VReg] = []

    def __repr__(self) -> str:
        return "ThrottleHook()"

    @classmethod
    def entries(cls, chunk: ast.Chunk) -> list:
        return top_functions(chunk, ["throttle"])

    @classmethod
    def plan(cls, chunk: ast.Chunk, source: Source, env: Environment) -> tuple[ast.Chunk, list]:
        """The script after stdlib/cpufreq.lua; throttle and its sched_switch companion."""
        return policy_chunk(chunk, source), policy_hooks(env.fields_of("sched", "sched_switch"))

    def prologue(self, lw) -> list[Val]:
        b = lw.b
        self.args = [b.vreg(n) for n in self.params]
        return [Val.int_(self.args[0], (0, MAX_CPUS - 1))] + [Val.int_(v) for v in self.args[1:]]

    def finish_prologue(self, lw) -> None:
        """In the entry block, before the body: this CPU's record, its interval closed."""
        b = lw.b
        cpu, cur, max_, min_ = self.args
        b.emit(ir.Call(Helper.get_smp_processor_id, [], cpu))
        rec = maps.lookup(lw, cpu_map(lw), cpu)
        found, missing = b.block("cpu_record"), b.block("no_cpu_record")
        b.branch("eq", rec, 0, missing, found)
        b.start(missing)
        b.terminate(ir.Exit(0))
        b.start(found)
        now = b.vreg("now")
        b.emit(ir.Call(Helper.ktime_get_ns, [], now))
        close_interval(lw, rec, now)
        for v, name in ((cur, "cur"), (max_, "max"), (min_, "min")):
            b.emit(ir.Load(8, v, rec, OFF[name]))


def cpu_map(lw) -> maps.MapDecl:
    """The per-CPU records, declared in whichever program of the policy asks first."""
    decl = lw.maps.get(CPU_MAP)
    if decl is None:
        decl = maps.MapDecl("array", MAX_CPUS, Span(STDLIB_FILE, 1, 1, 1, 2), CPU_MAP, RECORD_SIZE,
                            BPF_F_MMAPABLE)    # user space writes single fields in place
        lw.maps[CPU_MAP] = decl
    return decl


def close_interval(lw, rec: ir.VReg, now: ir.VReg) -> None:
    """load = percent of the time since the last call the CPU was not idle; reset the
    idle sum (an idle stay still running counts up to now and goes on from now)."""
    b = lw.b
    idle, since, last = b.vreg("idle"), b.vreg("since"), b.vreg("last")
    b.emit(ir.Load(8, idle, rec, OFF["idle"]))
    b.emit(ir.Load(8, since, rec, OFF["since"]))
    running, idling = b.block("not_idle"), b.block("idle_now")
    b.branch("eq", since, 0, running, idling)
    b.start(idling)
    b.mov(idle, b.bin("add", idle, b.bin("sub", now, since)))
    b.emit(ir.Store(8, rec, OFF["since"], now))
    b.jump(running)
    b.start(running)
    b.emit(ir.Store(8, rec, OFF["idle"], 0))
    b.emit(ir.Load(8, last, rec, OFF["last"]))
    b.emit(ir.Store(8, rec, OFF["last"], now))
    measured, done = b.block("measured"), b.block("load_done")
    b.branch("eq", last, 0, done, measured)
    b.start(measured)
    span = b.bin("sub", now, last, "span")
    store = b.block("load_store")
    b.branch("sle", span, 0, done, store)
    b.start(store)
    busy = b.bin("sub", span, idle, "busy")
    b.limit(busy, "slt", 0, "busy")
    b.emit(ir.Store(8, rec, OFF["load"], b.bin("udiv", b.bin("mul", busy, 100), span, "load")))
    b.jump(done)
    b.start(done)


def idle_switch(lw, args, node, scope):
    """stdlib/cpufreq.lua's sched_switch: time the CPU's stays in its idle task."""
    b = lw.b
    prev, nxt = (lw.int_operand(a, node, "pids are integers") for a in args)
    cpu, now = b.vreg("cpu"), b.vreg("now")
    b.emit(ir.Call(Helper.get_smp_processor_id, [], cpu))
    rec = maps.lookup(lw, cpu_map(lw), cpu)
    found, done = b.block("cpu_record"), b.block("switch_done")
    b.branch("eq", rec, 0, done, found)
    b.start(found)
    b.emit(ir.Call(Helper.ktime_get_ns, [], now))
    left, after_left = b.block("left_idle"), b.block("after_left")
    b.branch("eq", b.reg(prev), 0, left, after_left)
    b.start(left)                                   # the CPU leaves idle: add the stay
    since = b.vreg("since")
    b.emit(ir.Load(8, since, rec, OFF["since"]))
    timed = b.block("stay_timed")
    b.branch("eq", since, 0, after_left, timed)
    b.start(timed)
    b.emit(ir.AtomicAdd(8, rec, OFF["idle"], b.bin("sub", now, since)))
    b.emit(ir.Store(8, rec, OFF["since"], 0))
    b.jump(after_left)
    b.start(after_left)
    enters = b.block("enters_idle")
    b.branch("eq", b.reg(nxt), 0, enters, done)
    b.start(enters)
    b.emit(ir.Store(8, rec, OFF["since"], now))
    b.jump(done)
    b.start(done)
    return []


def stdlib_source() -> str:
    return stdlib.source("cpufreq.lua")


def policy_chunk(chunk: ast.Chunk, source: Source) -> ast.Chunk:
    """A checked policy script with stdlib/cpufreq.lua before it: what its programs are
    compiled from. A script without `throttle`, or with its own sched_switch program, is
    a CompileError."""
    if not top_functions(chunk, ["throttle"]):
        raise CompileError([Diagnostic(
            "a CPU-frequency policy defines function throttle(cpu, cur, max, min)",
            Span(source.filename, 1, 1, 1, 2))], source)
    own = next(iter(top_functions(chunk, ["tracepoint", "sched", "sched_switch"])), None)
    if own is not None:
        raise CompileError([Diagnostic(
            "a CPU-frequency policy has its own sched:sched_switch program (it measures "
            "cpufreq.load): put this tracepoint function in a script of its own", own.span)],
            source)
    prelude = parse(stdlib_source(), STDLIB_FILE)
    return ast.Chunk(chunk.span, ast.Block(prelude.body.span, prelude.body.stmts + chunk.body.stmts),
                     source.filename)


def policy_hooks(sched_switch_fields: dict[str, TraceField],
                 throttle: ThrottleHook | None = None) -> list[Hook]:
    """The records of a policy's programs: [throttle, tracepoint.sched.sched_switch]."""
    return [throttle or ThrottleHook(), TracepointHook("sched", "sched_switch", sched_switch_fields)]


def outside_policy(lw, what: str, node) -> None:
    """The error for the policy's library (`what`: 'cpufreq.load') outside a policy."""
    lw.error(node, f"{what} is available to a CPU-frequency policy: a script that defines "
                   "throttle(cpu, cur, max, min), run with --cpufreq")


def _record(lw, cpu: Val, node, what: str):
    """The address of a CPU's record (0 outside them), or None outside a policy."""
    if CPU_MAP not in lw.maps and not isinstance(lw.hook, ThrottleHook):
        outside_policy(lw, what, node)
        return None
    k = lw.int_operand(cpu, node, lambda got: f"bad argument #1 to '{what}' (number expected, "
                                              f"got {got})")
    return maps.lookup(lw, cpu_map(lw), k)


def target(lw, args, node, scope):
    if len(args) != 3 or args[2].data is None or args[2].data.decode("latin-1") not in RELATIONS:
        lw.error(node, "cpufreq.target takes a CPU, a frequency in kHz and '<=' or '>=': "
                       "cpufreq.target(cpu, freq, '<=')")
        return []
    rec = _record(lw, args[0], node, "cpufreq.target")
    if rec is None:
        return []
    freq = lw.int_operand(args[1], node, lambda got: f"bad argument #2 to 'cpufreq.target' "
                                                     f"(number expected, got {got})")
    b = lw.b
    found, missing, done = b.block("target_cpu"), b.block("target_no_cpu", cold=True), b.block("targeted")
    b.branch("eq", rec, 0, missing, found)
    b.start(found)
    b.emit(ir.Store(8, rec, OFF["target"], b.small(freq)))
    b.emit(ir.Store(8, rec, OFF["relation"], RELATIONS[args[2].data.decode()]))
    b.emit(ir.AtomicAdd(8, rec, OFF["requests"], b.copy(1)))
    b.jump(done)
    b.start(missing)
    lw.count_at(node.span, f"request dropped: no such CPU (CPUs 0 to {MAX_CPUS - 1})")
    b.jump(done)
    b.start(done)
    return []


def _field_reader(field: str, what: str):
    def lower(lw, args, node, scope):
        if len(args) != 1:
            lw.error(node, f"{what} takes a CPU number: {what}(cpu)")
            return [Val.int_(0)]
        rec = _record(lw, args[0], node, what)
        if rec is None:
            return [Val.int_(0)]
        b = lw.b
        v = b.vreg(field)
        b.mov(v, 0)
        found, done = b.block(f"{field}_cpu"), b.block(f"{field}_read")
        b.branch("eq", rec, 0, done, found)
        b.start(found)
        b.emit(ir.Load(8, v, rec, OFF[field]))
        b.jump(done)
        b.start(done)
        return [Val.int_(v)]
    return lower


load = _field_reader("load", "cpufreq.load")
get_temp = _field_reader("temp", "acpi.get_temp")
