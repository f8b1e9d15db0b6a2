"""Worst-case cost: how many instructions one run of a program can execute.

Owns the estimate `luabpf check` prints, and fitting the step cap of pattern matches to
the budget it is held to: each hook record's (`loop_bound`, `pattern_steps`, `budget`,
hooks/base.py; docs/language.md, "Cost of a run"). The analysis reads the final BPF program
(resolved instructions, the same bytes the kernel gets), so nothing that lowering,
optimisation or emission adds or removes escapes it:

* the control-flow graph of the instructions: jumps, conditional jumps, `may_goto`
  (both ways), `exit`, and BPF-to-BPF calls (`call` with src PSEUDO_CALL), whose callee
  is a range of instructions after the entry function, from its first instruction to
  the next callee's;
* loops are the natural loops of that graph (a back-edge is an edge to an instruction
  on the depth-first path); each loop header carries a `LoopInfo` (`marks`, keyed by
  instruction index) saying how many times the header can run per entry into the loop —
  lowering knows that figure from the loop's bound or trip count, pattern matching from
  its step cap (a header without one is counted as `UNMARKED`);
* loops are collapsed innermost first: one trip costs the longest path from the header
  through the loop's body (inner loops counted whole), the loop costs `runs × trip`;
  the program costs the longest path from its first instruction, a call the callee's
  cost plus one;
* the loops of one pattern match share a `group` and a step counter: together their heads
  run at most `runs` times (the cap, plus the step that fails), however they nest. A group
  is collapsed at its outermost loops, as a whole: every instruction of its loops runs in
  a *step*, a path from one of the group's heads to the next head it reaches or out of
  the loops, so the group costs `runs × its longest step`, not the product of its loops'
  bounds. Sequential outermost loops of one group (an anchored pattern's runs) are paid
  once, at the first, when every path to the others passes it; else each pays in full.

Every instruction counts 1 (a helper call too: the figure counts instructions, not
nanoseconds). Pure: no kernel access.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from luabpf.compiler.bpf.opcode import PSEUDO_CALL, Class, JumpOp
from luabpf.compiler.front.diagnostics import InternalError
from luabpf.compiler.front.luaint import MAXINT

FITTED_FLOOR = 1024        # the fewest steps a match without `--@bound` is fitted down to
MAX_FIGURE = MAXINT                  # the largest bound or budget a flag or annotation takes
UNMARKED_RUNS = 0x10000 + 1          # a string's length + 1: the default of luabpf's own loops


def check_figure(value) -> str | None:
    """Why a loop bound or a budget given by a flag or an option cannot be used, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be a whole number, not {value!r}"
    if not 1 <= value <= MAX_FIGURE:
        return f"must be between 1 and {MAX_FIGURE} (2^63 - 1), not {value}"
    return None


def pattern_steps(hook, options) -> int:
    """The step cap of a match without `--@bound`: fitted by `fit_pattern_steps`, else the
    hook record's (`pattern_steps`)."""
    return options.pattern_steps if options.pattern_steps is not None else hook.pattern_steps


def fit_pattern_steps(insns: list, marks: dict[int, "LoopInfo"], budget: int, steps: int) -> int | None:
    """The largest cap, below `steps` and at least `min(steps, FITTED_FLOOR)`, that the
    matches without `--@bound` (their loops `default_cap`) may share so that the program's
    worst case fits `budget`; None when there is none (or no such match)."""
    if not any(info.default_cap for info in marks.values()):
        return None

    def fits(cap: int) -> bool:
        capped = {k: replace(info, runs=cap + 1, bound=cap) if info.default_cap else info
                  for k, info in marks.items()}
        return analyse(insns, capped)[1].total <= budget
    lo, hi = min(steps, FITTED_FLOOR), steps       # fits(lo) is asked; hi does not fit
    if lo >= hi or not fits(lo):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


@dataclass
class LoopInfo:
    """What lowering knows of one loop: where it is, and how many times its header runs
    each time the loop is entered (`runs`); `bound` is the figure a user states or sees
    (iterations), `what` names the loop in messages."""
    runs: int
    bound: int
    span: object = None                  # compiler.source.Span
    what: str = "loop"
    budgeted: bool = True                # held to the hook's budget (see budgeted_estimate)
    group: object = None                 # loops sharing one step counter (a pattern match)
    default_cap: bool = False            # a match's loop whose cap is no `--@bound`'s


# A loop whose header carries no mark: built without `LoopLowering.loop_head`, or its head
# lost its label on the way to the BPF program. Bounded, like every loop luabpf makes
# itself, by a string's length, and held to the budget, so that a missing mark shows
# instead of hiding a loop's cost.
UNMARKED = LoopInfo(UNMARKED_RUNS, UNMARKED_RUNS - 1, None, "loop luabpf generates")


@dataclass
class LoopCost:
    info: LoopInfo
    header: int                          # instruction index
    trip: int                            # the longest path through one trip
    total: int                           # runs × trip
    inner: list["LoopCost"] = field(default_factory=list)

    def describe(self) -> str:
        where = f"line {self.info.span.line}" if self.info.span is not None else "luabpf's own code"
        if self.info.group is not None:
            return (f"the {self.info.what} at {where} (at most {self.info.bound:,} steps, up to "
                    f"{self.trip:,} instructions a step: {self.total:,})")
        return (f"the {self.info.what} at {where} (bound {self.info.bound:,}, up to "
                f"{self.trip:,} instructions a trip: {self.total:,})")


@dataclass
class Estimate:
    """The worst case of one program: `total` instructions; `loops` outermost first;
    `held` the part the budget holds it to (loops that are not `budgeted` counted once)."""
    total: int
    loops: list[LoopCost]
    held: int = 0
    functions: dict = field(default_factory=dict)   # BPF function's first slot → one call's cost

    def heaviest(self, limit: int = 3) -> list[LoopCost]:
        """The outermost loops that cost most, heaviest first (a match's loops once)."""
        out, groups = [], set()
        for c in sorted(self.loops, key=lambda c: -c.total):
            if c.info.group is None or id(c.info.group) not in groups:
                groups.add(id(c.info.group))
                out.append(c)
        return out[:limit]


class CostError(InternalError):
    """The program's control flow is not what the analysis can bound (a bug of ours)."""


def estimate(insns: list, marks: dict[int, LoopInfo]) -> Estimate:
    """The worst-case cost of the program `insns` (resolved) with loop headers `marks`."""
    prog = _Program(insns, marks)
    total, loops = prog.function_cost(0)
    functions = {prog.slot_of[k]: cost for k, (cost, _) in prog.memo.items() if k != 0}
    return Estimate(total, loops, total, functions)


def budgeted_estimate(insns: list, marks: dict[int, LoopInfo]) -> Estimate:
    """The cost the budget holds a program to: loops that are not `budgeted` (luabpf's own
    loops over a string's bytes) counted for one trip each time they are entered."""
    once = {k: info if info.budgeted else replace(info, runs=1)
            for k, info in marks.items()}
    held = estimate(insns, once)
    held.loops = [c for c in held.loops if c.info.budgeted]
    return held


def analyse(insns: list, marks: dict[int, LoopInfo]) -> tuple[Estimate, Estimate]:
    """(the whole worst case, the part held to the budget) of one program."""
    whole = estimate(insns, marks)
    if all(info.budgeted for info in marks.values()):
        return whole, whole
    held = budgeted_estimate(insns, marks)
    whole.held = held.total
    return whole, held


def marks_from_labels(items: list, loops_by_label: dict[str, LoopInfo]) -> dict[int, LoopInfo]:
    """Loop marks by instruction index, from an unresolved instruction list whose labels
    name loop headers (`bpf.encode.resolve` drops labels but keeps the order)."""
    marks: dict[int, LoopInfo] = {}
    index = 0
    for item in items:
        if getattr(item, "slots", 1) == 0:
            info = loops_by_label.get(item.name)
            if info is not None:
                marks[index] = info
        else:
            index += 1
    return marks


class _Program:
    def __init__(self, insns: list, marks: dict[int, LoopInfo]):
        self.insns = insns
        self.marks = marks
        self.slot_of = []
        slot = 0
        for i in insns:
            self.slot_of.append(slot)
            slot += i.slots
        self.index_of = {s: k for k, s in enumerate(self.slot_of)}
        self.starts = sorted({0} | {self.target(k) for k, i in enumerate(insns) if _is_pseudo_call(i)})
        self.memo: dict[int, tuple[int, list[LoopCost]]] = {}
        self.active: set[int] = set()

    def target(self, k: int) -> int:
        i = self.insns[k]
        delta = i.imm if (i.code == Class.JMP32 | JumpOp.JA or _is_pseudo_call(i)) else i.off
        slot = self.slot_of[k] + 1 + delta
        if slot not in self.index_of:
            raise CostError(f"instruction {k} jumps outside the program")
        return self.index_of[slot]

    def successors(self, k: int, end: int) -> list[int]:
        i = self.insns[k]
        if i.code & 0x07 in _JUMP_CLASSES:
            op = i.code & 0xF0
            if op == JumpOp.EXIT:
                return []
            if op == JumpOp.CALL:
                return [k + 1]
            if op == JumpOp.JA:
                return [self.target(k)]
            out = [k + 1, self.target(k)]         # conditional jumps and may_goto
        else:
            out = [k + 1]
        for s in out:
            if not 0 <= s < end:
                raise CostError(f"instruction {k} leaves its function")
        return out

    def function_cost(self, start: int) -> tuple[int, list[LoopCost]]:
        if start in self.memo:
            return self.memo[start]
        if start in self.active:
            raise CostError("a BPF-to-BPF call cycle")
        self.active.add(start)
        later = [s for s in self.starts if s > start]
        end = later[0] if later else len(self.insns)
        result = self._region(start, end)
        self.active.discard(start)
        self.memo[start] = result
        return result

    def weight(self, k: int) -> int:
        i = self.insns[k]
        if _is_pseudo_call(i):
            return 1 + self.function_cost(self.target(k))[0]
        return 1

    def _region(self, start: int, end: int) -> tuple[int, list[LoopCost]]:
        succ: dict[int, list[int]] = {}
        order: list[int] = []                     # reachable instructions, DFS preorder
        back: dict[int, list[int]] = {}           # header → sources of its back-edges
        on_path: set[int] = set()
        stack = [(start, iter(self.successors(start, end)))]
        succ[start] = self.successors(start, end)
        order.append(start)
        on_path.add(start)
        while stack:
            k, it = stack[-1]
            for s in it:
                if s in on_path:
                    back.setdefault(s, []).append(k)
                elif s not in succ:
                    succ[s] = self.successors(s, end)
                    order.append(s)
                    on_path.add(s)
                    stack.append((s, iter(succ[s])))
                    break
            else:
                stack.pop()
                on_path.discard(k)
        preds: dict[int, list[int]] = {k: [] for k in succ}
        for k, ss in succ.items():
            for s in ss:
                preds[s].append(k)
        bodies = {}
        for h, sources in back.items():
            body = {h}
            work = [s for s in sources if s != h]
            body.update(work)
            while work:
                n = work.pop()
                for p in preds[n]:
                    if p not in body:
                        body.add(p)
                        work.append(p)
            bodies[h] = body
        rep = {k: k for k in succ}                 # instruction → the loop header standing for it
        weight = {k: self.weight(k) for k in succ}
        costs: dict[int, LoopCost] = {}
        info_of = {h: self.marks.get(h) or UNMARKED for h in bodies}
        # A loop of a group inside another loop of its group is not collapsed on its own:
        # its instructions are steps of the group (see the module docstring).
        grouped = {h for h in bodies if info_of[h].group is not None and any(
            o != h and h in bodies[o] and info_of[o].group == info_of[h].group for o in bodies)}
        for h in sorted(bodies, key=lambda h: len(bodies[h])):     # innermost first
            if h in grouped:
                continue
            body = bodies[h]
            nodes = {rep[n] for n in body}
            info = info_of[h]
            if info.group is None:
                trip = self._longest(h, body, succ, rep, weight, skip_to=h, costs=costs)
            else:
                heads = {g for g in grouped if g in body and info_of[g].group == info.group} | {h}
                trip = self._longest_step(heads, body, succ, rep, weight)
            inner = [costs.pop(n) for n in nodes if n in costs and n != h]
            cost = LoopCost(info, h, trip, min(MAX_FIGURE, info.runs * trip),
                            sorted(inner, key=lambda c: -c.total))
            costs[h] = cost
            for n in body:
                rep[n] = h
            weight[h] = cost.total
        total = self._longest(start, succ.keys(), succ, rep, weight, skip_to=None, costs=costs)
        return total, sorted(costs.values(), key=lambda c: -c.total)

    def _longest_step(self, heads: set[int], body, succ, rep, weight) -> int:
        """The heaviest step of a group: a path from one of its `heads` through `body` that
        stops before the next head (or where it leaves `body`)."""
        inside = {rep[k] for k in body}
        edges: dict[int, set[int]] = {n: set() for n in inside}
        for k in body:
            n = rep[k]
            for s in succ[k]:
                r = rep[s]
                if r in inside and r != n and r not in heads:
                    edges[n].add(r)
        best: dict[int, int] = {}
        for h in heads:
            self._longest_from(h, edges, weight, best)
        return max(best[h] for h in heads)

    @staticmethod
    def _longest_from(entry: int, edges, weight, best: dict[int, int]) -> None:
        """best[n]: the heaviest path from n in the graph `edges`, for every n reachable
        from entry (memoised in best); a cycle is an irreducible loop."""
        if entry in best:
            return
        state: dict[int, int] = {}                 # 1 on the path
        stack = [(entry, iter(edges[entry]))]
        state[entry] = 1
        while stack:
            n, it = stack[-1]
            for s in it:
                if state.get(s) == 1:
                    raise CostError("a loop the analysis cannot bound (irreducible control flow)")
                if s not in state and s not in best:
                    state[s] = 1
                    stack.append((s, iter(edges[s])))
                    break
            else:
                stack.pop()
                state[n] = 2
                tail = max((best[s] for s in edges[n]), default=0)
                best[n] = min(MAX_FIGURE, weight[n] + tail)

    def _paid_once(self, entry: int, edges, costs: dict, nodes) -> dict[int, int]:
        """Weights for the outermost loops of a group that stand side by side here: the
        first pays the group's whole cost (its runs × its longest step) when every path from
        `entry` to the others passes it, and the others nothing; else each pays in full."""
        groups: dict[object, list[int]] = {}
        for n in nodes:
            c = costs.get(n)
            if c is not None and c.header == n and c.info.group is not None:
                groups.setdefault(c.info.group, []).append(n)
        override: dict[int, int] = {}
        for members in groups.values():
            step = max(costs[n].trip for n in members)
            whole = min(MAX_FIGURE, costs[members[0]].info.runs * step)
            if len(members) == 1:
                continue
            lead = min(members)
            seen, work = {entry}, [entry] if entry != lead else []
            while work:
                for s in edges[work.pop()]:
                    if s != lead and s not in seen:
                        seen.add(s)
                        work.append(s)
            dominated = entry == lead or not any(m in seen for m in members if m != lead)
            for m in members:
                override[m] = whole if (m == lead or not dominated) else 0
        return override

    def _longest(self, entry: int, instrs, succ, rep, weight, skip_to, costs=None) -> int:
        """The heaviest path from entry through the instructions `instrs` (a collapsed loop
        stands for its instructions and weighs its total), edges back to skip_to left out;
        a remaining cycle is an irreducible loop. With `costs`, the collapsed loops of one
        group found here are paid once (`_paid_once`)."""
        members: dict[int, list[int]] = {}
        for k in instrs:
            members.setdefault(rep[k], []).append(k)
        nodes = members.keys()
        edges: dict[int, set[int]] = {n: set() for n in nodes}
        for n in nodes:
            for k in members[n]:
                for s in succ[k]:
                    r = rep[s]
                    if r in nodes and r != n and r != skip_to:
                        edges[n].add(r)
        if costs:
            override = self._paid_once(entry, edges, costs, nodes)
            if override:
                weight = {**weight, **override}
        best: dict[int, int] = {}
        self._longest_from(entry, edges, weight, best)
        return best[entry]


_JUMP_CLASSES = (int(Class.JMP), int(Class.JMP32))


def _is_pseudo_call(i) -> bool:
    return i.code == Class.JMP | JumpOp.CALL and i.src == PSEUDO_CALL
