"""The compiler pipeline and its product.

Owns the driver: `compile_source` (parse and check a script once, make its hook's records
from hooks/table.py, compile one program per record) and `compile_program`: lower →
optimise → allocate → emit → resolve; and `CompiledProgram`, everything a loader or an
object writer needs: resolved instructions (map references still symbolic), the maps to
create with their initial contents, the runtime error sites, the globals' layout, the
hook record and what compiling found out about the entry (how many values it returns).
Pure: no kernel access.
"""
from __future__ import annotations

import dataclasses
import gc
import os
import struct
import sys
from dataclasses import dataclass, field

from luabpf.compiler import ir
from luabpf.compiler.back import cost
from luabpf.compiler.back.emit import emit, relax_long_jumps, sub_label
from luabpf.compiler.back.regalloc import allocate
from luabpf.compiler.back.stack import STACK_LIMIT, place_stack_slots, remove_dead_stores
from luabpf.compiler.bpf import disasm, encode
from luabpf.compiler.bpf.insn import Label
from luabpf.compiler.bpf.uapi import BPF_F_MMAPABLE, MapType
from luabpf.compiler.front import check, parser
from luabpf.compiler.front.diagnostics import CompileError, Diagnostic
from luabpf.compiler.front.source import Source, Span
from luabpf.compiler.hooks import table
from luabpf.compiler.hooks.base import Hook
from luabpf.compiler.hooks.packet import VERDICTS_MAP
from luabpf.compiler.lib import events
from luabpf.compiler.lower.bindings import inlined_diagnostic
from luabpf.compiler.lower.lowerer import ERRORS_MAP, GLOBALS_MAP, ErrorSite, GlobalVar, Options, lower
from luabpf.compiler.opt.cleanup import optimise

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class MapSpec:
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    initial: dict[bytes, bytes] = field(default_factory=dict)
    flags: int = 0


@dataclass
class CompiledProgram:
    source: Source
    hook: object
    insns: list                       # resolved bpf.insn.Insn, map fds still symbolic
    maps: list[MapSpec]
    sites: list[ErrorSite]
    globals: dict[str, GlobalVar]
    stack_size: int
    user_maps: dict = field(default_factory=dict)    # script name → maps.MapDecl
    prints: list = field(default_factory=list)       # events.PrintSite, by record id
    options: Options | None = None
    funcs: list = field(default_factory=lambda: [("", 0)])   # (BPF function, first slot)
    frame_bytes: dict = field(default_factory=dict)         # BPF function → its frame's size
    estimate: cost.Estimate | None = None    # worst-case instructions of one run (cost.py)
    nresults: int = 0                 # how many values the entry function returns

    @property
    def worst_case(self) -> int | None:
        """The most instructions one run can execute (loops at their bounds)."""
        return self.estimate.total if self.estimate else None

    @property
    def budget(self) -> int:
        """The worst case this program was held to: --budget, else its hook's."""
        return budget_of(self.hook, self.options or Options())

    def asm(self) -> str:
        return disasm.disassemble(self.insns, self.source.lines)

    def bytecode(self, map_fds: dict[str, int] | None = None) -> bytes:
        insns = self.insns
        if map_fds is not None:             # a map value's offset stays in the high half
            insns = [i.replace(imm=(i.imm & ~0xFFFFFFFF) | map_fds[i.map_ref]) if i.map_ref else i
                     for i in insns]
        return encode.encode(insns)

    @property
    def insn_count(self) -> int:
        return sum(i.slots for i in self.insns)

    def manifest(self) -> dict:
        """What user space needs to read a running program's maps, globals, events and
        error counts, as JSON-ready data (kept with the program's pins for `luabpf set`)."""
        return script_manifest([self])

    def lines_of(self, file: str) -> list[str]:
        """The lines of a file this program's code comes from: its script, or luabpf's own
        kernel Lua (stdlib/)."""
        if file == self.source.filename:
            return self.source.lines
        if file.startswith("<luabpf>/"):
            path = os.path.join(PACKAGE_ROOT, file[len("<luabpf>/"):])
            try:
                with open(path, encoding="utf-8") as f:
                    return f.read().split("\n")
            except OSError:
                return []
        return []

    def site(self, site_id: int) -> ErrorSite:
        """The error site a program reports by its id (ids of a script's programs follow
        one another)."""
        return self.sites[site_id - self.first_site]

    @property
    def first_site(self) -> int:
        return self.options.first_site if self.options else 0


def merged_map_specs(programs: list[CompiledProgram]) -> list[MapSpec]:
    """The maps of programs compiled from one script, each once: programs share a map by
    name (an errors map as large as the largest site id any of them counts)."""
    merged: dict = {}
    for compiled in programs:
        for spec in compiled.maps:
            have = merged.get(spec.name)
            if have is None or spec.max_entries > have.max_entries:
                merged[spec.name] = spec
    return list(merged.values())


def script_manifest(programs: list[CompiledProgram]) -> dict:
    """The manifest of programs compiled from one script (`compile_script`): they share
    globals, maps, the errors map and the ring buffer, their site ids one after another."""
    first = programs[0]
    verdicts = [list(p.hook.verdict_names) for p in programs if p.hook.count_verdicts]
    maps: dict = {}
    for p in programs:
        maps.update({name: {"kind": d.kind, "max_entries": d.max_entries}
                     for name, d in p.user_maps.items() if not name.startswith("luabpf_")})
    return {
        "file": first.source.filename,
        "hook": first.hook.name,
        "programs": [{"entry": p.hook.entry, "hook": p.hook.name} for p in programs],
        "globals": {g.name: {"offset": g.offset, "kind": g.kind} for g in first.globals.values()},
        "maps": maps,
        "sites": [{"line": s.line, "message": s.message, "fatal": s.fatal, "file": s.file}
                  for p in programs for s in p.sites],
        "prints": [{"line": s.line, "file": s.file, "values": [list(v) for v in s.values],
                    **({"error_site": s.error_site} if s.error_site is not None else {})}
                   for p in programs for s in p.prints],
        "verdicts": verdicts[0] if verdicts else [],
    }


def parse_and_check(text: str, filename: str):
    """The checked syntax tree of a script; every error carries the source for rendering."""
    try:
        chunk = parser.parse(text, filename)
        check.check(chunk)
    except CompileError as e:
        if e.source is None:
            e.source = Source(text, filename)
        raise
    return chunk


def compile_program(text: str, filename: str, hook, options: Options | None = None,
                    chunk=None) -> CompiledProgram:
    # The cyclic garbage collector would walk the whole syntax tree and IR again and
    # again while compiling a large script (a third of the time at 1000 rules); what
    # compiling leaves is freed by reference counts, cycles at the next collection.
    # Inlining recurses through lowering ~30 Python frames per nested call (200 at most,
    # lower.MAX_INLINE_DEPTH).
    collecting, limit = gc.isenabled(), sys.getrecursionlimit()
    gc.disable()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        return _compile_program(text, filename, hook, options, chunk)
    finally:
        sys.setrecursionlimit(limit)
        if collecting:
            gc.enable()


def _compile_program(text: str, filename: str, hook, options: Options | None = None,
                     chunk=None) -> CompiledProgram:
    source = Source(text, filename)
    if chunk is None:
        chunk = parse_and_check(text, filename)
    options = options or Options()
    low = lower(chunk, source, hook, options)
    low.subs = _called(low)
    insns, stack = _function_code(low.function, source, "")
    stacks = {"": stack}
    for name, fn in low.subs:
        code, stacks[name] = _function_code(fn, source, f"{name}:")
        insns += [Label(sub_label(name))] + code
    _check_chain_stack(low, stacks, source, hook.entry)
    items = relax_long_jumps(insns)
    funcs = [("", 0)] + _function_starts(items, [name for name, _ in low.subs])
    insns = encode.resolve(items)
    loops = {b.name: b.loop for fn in [low.function] + [f for _, f in low.subs]
             for b in fn.blocks if b.loop is not None}       # block names carry emit's prefix
    marks = cost.marks_from_labels(items, loops)
    estimate, held = cost.analyse(insns, marks)
    budget = budget_of(hook, options)
    if held.total > budget and options.pattern_steps is None:
        fitted = cost.fit_pattern_steps(insns, marks, budget, hook.pattern_steps)
        if fitted is not None:        # once more, with the matches' default cap lowered to fit
            return _compile_program(text, filename, hook,
                                    dataclasses.replace(options, pattern_steps=fitted), chunk)
    spans = dict(low.spans)
    check_budget(held, hook, options, source,
                 {_slot_of(insns, idx): (n, spans.get(n)) for n, idx in funcs if n})
    return CompiledProgram(source, hook, insns, program_maps(low, hook, options), low.sites,
                           low.globals, max(stacks.values()), low.maps, low.prints, options,
                           funcs=[(n, _slot_of(insns, idx)) for n, idx in funcs],
                           frame_bytes=low.frames, estimate=estimate, nresults=low.nresults)


def _called(low) -> list:
    """Optimised, the BPF functions the program still calls (a call in dead code goes with
    it, and the kernel wants no function nothing calls), in the order first called."""
    fns = dict(low.subs)
    low.function = optimise(low.function)
    out, todo, seen = [], [low.function], set()
    while todo:
        for b in todo.pop(0).blocks:
            for op in b.ops:
                if isinstance(op, ir.CallSub) and op.target not in seen:
                    seen.add(op.target)
                    fn = optimise(fns[op.target])
                    out.append((op.target, fn))
                    todo.append(fn)
    return out


def _function_starts(items: list, names: list[str]) -> list[tuple[str, int]]:
    """(name, index of its first instruction) of each BPF function, from the labels of the
    final instruction list (after `relax_long_jumps`, which moves what follows a far jump)."""
    where = {sub_label(n): n for n in names}
    starts, index = [], 0
    for item in items:
        if isinstance(item, Label):
            if item.name in where:
                starts.append((where[item.name], index))
        else:
            index += 1
    return starts


def _slot_of(insns: list, index: int) -> int:
    return sum(i.slots for i in insns[:index])


def _function_code(fn: ir.Function, source: Source, prefix: str) -> tuple[list, int]:
    """One function (the program or a BPF function it calls): optimised, allocated, its
    frame laid out and emitted, labels still symbolic; and its stack bytes."""
    spill_slots: list[ir.StackSlot] = []

    def new_slot(vreg):
        s = ir.StackSlot(8, f"spill:{vreg!r}")
        spill_slots.append(s)
        return s

    alloc = allocate(fn, new_slot)
    cycle = ir.StackSlot(8, "call_cycle")
    uses_loops = any(isinstance(b.term, ir.MayGoto) for b in fn.blocks)
    remove_dead_stores(fn, spill_slots)
    stack = place_stack_slots(fn, spill_slots, [cycle], uses_loops, source)
    return emit(fn, alloc, cycle, prefix), stack


def _check_chain_stack(low, stacks: dict, source: Source, entry: str) -> None:
    """The kernel's limit on the stack of a chain of BPF calls: 512 bytes in all, each
    frame rounded up to 32 bytes; a located error at the deepest function of the chain."""
    calls = {name: {op.target for b in fn.blocks for op in b.ops if isinstance(op, ir.CallSub)}
             for name, fn in [("", low.function)] + low.subs}
    depth: dict[str, tuple[int, list]] = {}

    def chain(name: str) -> tuple[int, list]:
        if name not in depth:
            own = (max(stacks[name], 1) + 31) // 32 * 32
            below = max((chain(c) for c in calls[name]), default=(0, []), key=lambda x: x[0])
            depth[name] = (own + below[0], [name] + below[1])
        return depth[name]

    total, path = chain("")
    if total > STACK_LIMIT:
        names = [entry] + path[1:]
        raise CompileError([Diagnostic(
            f"the call chain {' → '.join(names)} needs {total} bytes of stack (each BPF "
            f"function's frame rounded up to 32 bytes); the kernel allows {STACK_LIMIT} across "
            "a chain of calls", dict(low.spans).get(path[-1]) or Span(source.filename, 1, 1, 1, 2),
            "use fewer values live at once in these functions")], source)


def budget_of(hook, options: Options) -> int:
    return options.budget if options.budget is not None else hook.budget


def check_budget(estimate: cost.Estimate, hook, options: Options, source: Source,
                 functions: dict | None = None) -> None:
    """Refuse a program whose worst case is over its hook's budget (or --budget), naming
    the loops that cost most, or the BPF functions (`functions`: first slot → name and
    span) when its calls, not its loops, make most of the cost."""
    budget = budget_of(hook, options)
    if estimate.total <= budget:
        return
    # the loops that make the cost: those with a real share of it (not a few hundred
    # instructions of the header parser's next to millions)
    heavy = [c for c in estimate.heaviest() if c.total * 100 >= estimate.total] or estimate.heaviest(1)
    entry = hook.entry or "the program"
    kind = hook.name or "program"
    whose = "--budget" if options.budget is not None else f"the budget of {kind} programs"
    message = (f"one run of {entry} may execute up to {estimate.total:,} instructions, "
               f"over {whose} ({budget:,})")
    by_calls = sorted(((c, functions[slot]) for slot, c in estimate.functions.items()
                       if slot in (functions or {})), key=lambda x: -x[0])
    span = None
    if by_calls and (not heavy or heavy[0].total * 2 < estimate.total):
        message += ": most of it in calls, " + ", ".join(
            f"{name} (up to {c:,} instructions a call)" for c, (name, _) in by_calls[:3])
        span = by_calls[0][1][1]
        hint = "make fewer calls in one run, or allow more with --budget N"
    else:
        if heavy:
            chain = []
            for c in heavy:
                inner = c
                words = c.describe()
                while inner.inner:
                    inner = inner.inner[0]
                    words += ", around " + inner.describe()
                chain.append(words)
            message += ": " + "; ".join(chain)
        span = next((c.info.span for c in heavy if c.info.span is not None), None)
        if heavy and heavy[0].info.span is None:       # the header parser's walk, say
            hint = ("that loop is luabpf's own, bounded already: allow more with --budget N, "
                    "or make the script's own loops cheaper")
        elif heavy and heavy[0].info.group is not None:
            hint = ("lower the match's step cap with '--@bound N' on the line before its "
                    "statement, or allow more with --budget N")
        elif heavy:
            hint = ("lower the loop's bound with '--@bound N' on the line before it, or allow "
                    "more with --budget N")
        else:
            hint = "allow more with --budget N"
    if span is None:
        span = Span(source.filename, 1, 1, 1, 1)
    raise CompileError([Diagnostic(message, span, hint)], source)


def compile_source(text: str, filename: str, hook: str | Hook | None, options: Options | None = None,
                   env: table.Environment | None = None,
                   found_among: tuple[str, ...] = table.HOOK_NAMES) -> list[CompiledProgram]:
    """The programs of a script for a hook, by name or as a record: the script parsed and
    checked once, the hook's records made from it (hooks/table.py), a program compiled per
    record. None: the first hook of `found_among` whose entry function the script defines
    (`table.hook_for`). A name no hook has is a ValueError naming the choices."""
    if isinstance(hook, str):
        table.kind_of(hook)                   # before any work: an unknown name
    chunk = parse_and_check(text, filename)
    if hook is None:
        hook = table.hook_for(chunk, Source(text, filename), found_among)
    return compile_chunk(text, filename, chunk, hook, options, env)


def compile_chunk(text: str, filename: str, chunk, hook: str | Hook, options: Options | None = None,
                  env: table.Environment | None = None) -> list[CompiledProgram]:
    """`compile_source` of a script already parsed and checked (`parse_and_check`)."""
    if isinstance(hook, Hook):
        return [compile_program(text, filename, hook, options, chunk)]
    kind = table.kind_of(hook)
    source = Source(text, filename)
    chunk, records = kind.records(chunk, source, env or table.Environment())
    if kind.shares_state:
        return compile_script(text, filename, records, options, chunk)
    return compile_each(text, filename, records, options, chunk)


def compile_each(text: str, filename: str, hooks: list, options: Options | None = None,
                 chunk=None) -> list[CompiledProgram]:
    """One program per hook, each on its own (its maps, globals and site ids its own);
    every program's errors in one CompileError."""
    programs, errors = [], []
    for hook in hooks:
        try:
            programs.append(compile_program(text, filename, hook, options, chunk))
        except CompileError as e:          # every function's errors, in one report
            errors.append(e)
    if errors:
        raise merged_errors(errors, Source(text, filename))
    return programs


def compile_script(text: str, filename: str, hooks: list, options: Options | None = None,
                   chunk=None) -> list[CompiledProgram]:
    """One program per hook, from one script: they share its maps and globals, and number
    their error and print sites one after another (see `script_manifest`)."""
    if chunk is None:
        chunk = parse_and_check(text, filename)
    options = options or Options()
    programs, errors = [], []
    for hook in hooks:
        first_site = sum(len(p.sites) for p in programs) + options.first_site
        first_print = sum(len(p.prints) for p in programs) + options.first_print
        these = dataclasses.replace(options, first_site=first_site, first_print=first_print)
        try:
            programs.append(compile_program(text, filename, hook, these, chunk))
        except CompileError as e:          # the other entry functions' errors are wanted too
            errors.append(e)
    if errors:
        raise merged_errors(errors, Source(text, filename))
    return programs


def merged_errors(errors: list[CompileError], source: Source) -> CompileError:
    """One CompileError of the diagnostics of several programs of one script: in source
    order, each once (a helper two entry functions inline fails the same way in both)."""
    seen, diagnostics = {}, []
    for e in errors:
        for d in e.diagnostics:
            key = (d.span, d.message, d.inlined[2] if d.inlined else d.hint, d.severity)
            have = seen.get(key)
            if have is None:
                seen[key] = len(diagnostics)
                diagnostics.append(d)
            elif d.inlined and diagnostics[have].inlined:   # one note for every copy
                old = diagnostics[have]
                diagnostics[have] = inlined_diagnostic(
                    Diagnostic(d.message, d.span, d.inlined[2], d.severity), d.inlined[0],
                    set(old.inlined[1]) | set(d.inlined[1]))
    diagnostics.sort(key=lambda d: (d.file != source.filename, d.line, d.col))
    return CompileError(diagnostics, next((e.source for e in errors if e.source), source))


def program_maps(low, hook, options: Options) -> list[MapSpec]:
    maps = []
    if low.uses_globals_map or low.globals:
        words = [0] + [g.initial for g in low.globals.values()]
        value = struct.pack(f"<{len(words)}q", *words)
        maps.append(MapSpec(GLOBALS_MAP, MapType.ARRAY, 4, len(value), 1,
                            {struct.pack("<I", 0): value},
                            BPF_F_MMAPABLE))  # user space writes a global with one store
    if low.uses_errors_map:
        maps.append(MapSpec(ERRORS_MAP, MapType.ARRAY, 4, 8, max(1, options.first_site + len(low.sites))))
    if low.prints:
        maps.append(MapSpec(events.EVENTS_MAP, MapType.RINGBUF, 0, 0, events.EVENTS_SIZE))
    if hook.count_verdicts:
        maps.append(MapSpec(VERDICTS_MAP, MapType.PERCPU_ARRAY, 4, 8, len(hook.verdict_names)))
    for name, decl in low.maps.items():
        maps.append(MapSpec(name, decl.type, decl.key_size, decl.value_size, decl.max_entries,
                            flags=decl.flags))
    return maps
