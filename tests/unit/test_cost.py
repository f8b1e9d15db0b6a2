"""The worst-case cost of a run (compiler/back/cost.py): the analysis on hand-built BPF
programs (loops, nesting, BPF-to-BPF calls), and what compiling holds a script to:
per-hook budgets and default bounds, --budget, constant trip counts, `--@bound` range."""
from __future__ import annotations

import pytest

from luabpf.compiler.back import cost
from luabpf.compiler.lower.bindings import Options
from luabpf.compiler.bpf import insn as I
from luabpf.compiler.bpf.encode import resolve
from luabpf.compiler.bpf.opcode import JumpOp
from luabpf.compiler.front.diagnostics import CompileError
from luabpf.compiler.hooks.function import FunctionHook
from luabpf.compiler.hooks.packet import XdpHook, filter_hook
from luabpf.compiler.program import compile_program

from cli_runner import LONG_LOOP

R0, R1, R2 = I.Register.R0, I.Register.R1, I.Register.R2


def analyse(items, loops: dict[str, cost.LoopInfo]) -> cost.Estimate:
    return cost.estimate(resolve(items), cost.marks_from_labels(items, loops))


def counted_loop(name: str, body: int, end: str) -> list:
    """head: if r1 == 0 goto end; `body` movs; r1 -= 1; goto head (body + 3 a trip)."""
    return ([I.label(name), JumpOp.JEQ.imm(R1, 0, end)] + [I.mov(R2, k) for k in range(body)]
            + [I.ALUOp.SUB.imm(R1, 1), I.ja(name)])


# ---- the analysis on hand-built programs ----------------------------------------------

def test_straight_line_is_its_longest_path():
    items = [I.mov(R0, 0), JumpOp.JEQ.imm(R1, 0, "short"), I.mov(R0, 1), I.mov(R0, 2),
             I.label("short"), I.exit_()]
    assert analyse(items, {}).total == 5           # mov, jeq, mov, mov, exit


def test_a_loop_costs_its_runs_times_its_longest_trip():
    items = [I.mov(R1, 10)] + counted_loop("head", 4, "out") + [I.label("out"), I.exit_()]
    est = analyse(items, {"head": cost.LoopInfo(11, 10)})
    assert est.total == 1 + 11 * (1 + 4 + 2) + 1
    (loop,) = est.loops
    assert (loop.trip, loop.total) == (7, 77)


def test_nested_loops_multiply():
    inner = counted_loop("inner", 2, "inner_done")
    items = ([I.label("outer"), JumpOp.JEQ.imm(R0, 0, "out"), I.mov(R1, 5)] + inner
             + [I.label("inner_done"), I.ALUOp.SUB.imm(R0, 1), I.ja("outer"), I.label("out"), I.exit_()])
    est = analyse(items, {"outer": cost.LoopInfo(21, 20), "inner": cost.LoopInfo(6, 5)})
    inner_total = 6 * (1 + 2 + 2)
    assert est.loops[0].inner[0].total == inner_total
    assert est.total == 21 * (1 + 1 + inner_total + 2) + 1


def test_a_bpf_to_bpf_call_adds_its_callees_worst_case():
    """A callee is the range of instructions after the entry function; its loops count."""
    main = [I.mov(R0, 0), I.call_local("callee"), I.call_local("callee"), I.exit_()]
    callee = [I.label("callee"), I.mov(R1, 3)] + counted_loop("cl", 1, "cl_done") + \
             [I.label("cl_done"), I.mov(R0, 1), I.exit_()]
    est = analyse(main + callee, {"cl": cost.LoopInfo(4, 3)})
    callee_cost = 1 + 4 * (1 + 1 + 2) + 2
    assert est.total == 1 + 2 * (1 + callee_cost) + 1


def test_a_call_inside_a_loop_is_paid_every_trip():
    main = [I.mov(R1, 7)] + [I.label("h"), JumpOp.JEQ.imm(R1, 0, "out"), I.call_local("f"),
                              I.ALUOp.SUB.imm(R1, 1), I.ja("h"), I.label("out"), I.exit_()]
    callee = [I.label("f"), I.mov(R0, 1), I.mov(R0, 2), I.exit_()]
    est = analyse(main + callee, {"h": cost.LoopInfo(8, 7)})
    assert est.total == 1 + 8 * (1 + (1 + 3) + 2) + 1


def test_may_goto_is_a_branch_both_ways():
    items = [I.may_goto("out"), I.mov(R0, 1), I.mov(R0, 2), I.label("out"), I.exit_()]
    assert analyse(items, {}).total == 4


def test_an_unmarked_loop_is_bounded_by_the_longest_string_and_budgeted():
    items = [I.mov(R1, 3)] + counted_loop("x", 0, "out") + [I.label("out"), I.exit_()]
    est = analyse(items, {})
    assert est.loops[0].info.runs == cost.UNMARKED_RUNS
    assert est.loops[0].info.budgeted      # a lost mark shows, it does not hide a cost


def test_figures_saturate_instead_of_growing_without_end():
    inner = counted_loop("inner", 1, "inner_done")
    items = ([I.label("outer"), JumpOp.JEQ.imm(R0, 0, "out")] + inner
             + [I.label("inner_done"), I.ja("outer"), I.label("out"), I.exit_()])
    big = cost.LoopInfo(cost.MAX_FIGURE, cost.MAX_FIGURE - 1)
    assert analyse(items, {"outer": big, "inner": big}).total == cost.MAX_FIGURE


# ---- compiling a script ----------------------------------------------------------------

def compile_(src: str, hook="xdp", **options):
    hook = filter_hook(hook) if isinstance(hook, str) else hook
    return compile_program(src, "t.lua", hook, Options(loops="may_goto", **options))


def refusal(src: str, hook="xdp", **options):
    with pytest.raises(CompileError) as info:
        compile_(src, hook, **options)
    return info.value.diagnostics


def function_hook(name="f", nargs=1):
    return FunctionHook(entry=name, arg_kinds=("int",) * nargs)


def test_a_hundred_million_iterations_is_over_the_packet_budget_at_the_loop():
    (d,) = refusal(LONG_LOOP)
    assert (d.line, d.col) == (4, 3)
    assert f"over the budget of xdp programs ({XdpHook.budget:,})" in d.message
    assert "the while loop at line 4 (bound 100,000,000" in d.message
    assert "--budget" in d.hint


def test_budget_option_raises_or_lowers_the_limit():
    assert compile_(LONG_LOOP, budget=10**10).worst_case > 100_000_000
    small = "function filter(hdr, pld)\n  local n = 0\n  --@bound 100\n  while n < 100 do n = n + 1 end\n  return true\nend"
    prog = compile_(small)
    assert prog.estimate.total < 100 * 20 and prog.budget == XdpHook.budget
    (d,) = refusal(small, budget=50)
    assert "over --budget (50)" in d.message and d.line == 4


def test_nested_loops_are_named_with_both_lines():
    src = """function f(n)
  local s = 0
  --@bound 100000
  for i = 1, n do
    --@bound 100000
    for j = 1, n do
      s = s + 1
    end
  end
  return s
end"""
    (d,) = refusal(src, function_hook())
    assert d.line == 4
    assert "the for loop at line 4 (bound 100,000" in d.message
    assert "around the for loop at line 6 (bound 100,000" in d.message


def test_a_constant_trip_count_above_the_bound_is_a_compile_error():
    src = "function f()\n  local s = 0\n  for i = 1, 5000000 do s = s + i end\n  return s\nend"
    (d,) = refusal(src, function_hook(nargs=0))
    assert (d.line, d.col) == (3, 3)
    assert "runs 5,000,000 times" in d.message and "default bound" in d.message
    assert "--@bound 5000000" in d.hint


def test_the_trip_count_error_names_the_stated_bound():
    src = "function f()\n  local s = 0\n  --@bound 10\n  for i = 1, 11 do s = s + i end\n  return s\nend"
    (d,) = refusal(src, function_hook(nargs=0))
    assert d.line == 4 and "runs 11 times, more than its '--@bound 10'" in d.message
    src10 = src.replace("1, 11", "1, 10")
    assert compile_(src10, function_hook(nargs=0)).estimate.total < 1000
    (d,) = refusal(src, function_hook(nargs=0), max_loop=5)
    assert "--@bound 10" in d.message            # the annotation wins over --max-loop


def _source_loop(prog, line: int):
    """The estimate's loop written at `line` (a filter also has the header parser's loops)."""
    (loop,) = [c for c in prog.estimate.loops if c.info.span is not None and c.info.span.line == line]
    return loop


def test_default_bounds_differ_per_hook():
    loop = "  local n = 0\n  while n < 5000 do n = n + 1 end\n"
    filt = compile_("function filter(hdr, pld)\n" + loop + "  return true\nend")
    func = compile_("function f()\n" + loop + "  return n\nend", function_hook(nargs=0))
    assert _source_loop(filt, 3).info.bound == XdpHook.loop_bound == 1024
    assert _source_loop(func, 3).info.bound == FunctionHook.loop_bound
    assert _source_loop(compile_("function filter(hdr, pld)\n" + loop + "  return true\nend",
                                 max_loop=7), 3).info.bound == 7


def _match_loop(prog, line: int):
    """The first outermost loop of the match at `line` (an anchored match may have several,
    side by side, that share its step cap)."""
    loops = [c for c in prog.estimate.loops if c.info.what == "pattern match"
             and c.info.span.line == line]
    assert len({id(c.info.group) for c in loops}) == 1
    return loops[0]


def test_pattern_matching_is_held_to_the_budget_by_its_step_cap():
    """`a*b` backtracks quadratically over the longest view (65,535 bytes): its loops' own
    bounds multiply to more than 2^32; its step cap bounds the whole match instead."""
    src = 'function filter(hdr, pld)\n  return tostring(pld):match("a*b") == nil\nend'
    prog = compile_(src)
    est = prog.estimate
    loop = _match_loop(prog, 2)
    steps = XdpHook.pattern_steps
    assert loop.info.budgeted and loop.info.bound == steps and loop.info.runs == steps + 1
    assert loop.total == (steps + 1) * loop.trip and loop.trip < 60
    assert est.held == est.total < prog.budget      # nothing left outside the budget
    assert loop.total < est.total


LONG_SUBJECT = """function filter(hdr, pld)
  local s = tostring(pld)
  local k = s:find("SSH%-[^-%G]+%-([^-%G]+)")
  return k == nil
end"""


@pytest.mark.parametrize("subject", ["tostring(pld)", "tostring(pld:segment(10, 3000))"])
@pytest.mark.parametrize("anchor", ["", "^"])
def test_a_pattern_over_the_longest_view_or_a_long_segment_is_within_budget(subject, anchor):
    prog = compile_(LONG_SUBJECT.replace("tostring(pld)", subject).replace('find("', f'find("{anchor}'))
    assert prog.estimate.total <= prog.budget
    assert _match_loop(prog, 3).info.bound == XdpHook.pattern_steps


def test_side_by_side_loops_of_one_match_are_named_once():
    two = LONG_SUBJECT.replace('find("', 'find("^').replace("return k == nil",
                                                            "return k == nil and s:find('^a*b*c') == nil")
    (d,) = refusal(two, budget=1000)
    assert d.message.count("the pattern match at line 3") == 1
    assert d.message.count("the pattern match at line 4") == 1


def test_a_match_whose_cap_times_its_step_is_over_budget_is_refused_at_its_line():
    big = LONG_SUBJECT.replace("  local k =", "  --@bound 1000000\n  local k =")
    (d,) = refusal(big)
    assert (d.line, d.col) == (4, 13)
    assert "the pattern match at line 4 (at most 1,000,000 steps, up to " in d.message
    assert "step cap" in d.hint and "--@bound N" in d.hint
    (d,) = refusal(LONG_SUBJECT, budget=5000)
    assert d.line == 3 and "over --budget (5,000)" in d.message
    small = LONG_SUBJECT.replace("  local k =", "  --@bound 50\n  local k =")
    assert _match_loop(compile_(small, budget=5000), 4).info.bound == 50


def test_a_bound_on_a_statement_without_a_match_or_loop_is_still_refused():
    (d,) = refusal("function filter(hdr, pld)\n  --@bound 5\n  local x = 1\n  return true\nend")
    assert d.line == 2 and "s:match or s:find" in d.message


def test_a_step_cap_past_32_bits_is_a_located_error():
    src = LONG_SUBJECT.replace("  local k =", "  --@bound 4294967296\n  local k =")
    (d,) = refusal(src, budget=cost.MAX_FIGURE)
    assert d.line == 4 and "at most 2,147,483,647 steps" in d.message


# ---- groups: the loops of one match share a step counter ---------------------------------

def grouped(runs: int, group, what="pattern match") -> cost.LoopInfo:
    return cost.LoopInfo(runs, runs - 1, None, what, True, group)


def test_nested_loops_of_one_group_cost_runs_times_the_longest_step():
    """outer: 3 instructions to the inner head, inner: 1 + 2 + 2 a trip; the longest step
    is the inner's (5); the outer's step stops at the inner head (jeq, mov, mov)."""
    g = object()
    inner = counted_loop("inner", 2, "inner_done")
    items = ([I.label("outer"), JumpOp.JEQ.imm(R0, 0, "out"), I.mov(R1, 5)] + inner
             + [I.label("inner_done"), I.ALUOp.SUB.imm(R0, 1), I.ja("outer"), I.label("out"), I.exit_()])
    est = analyse(items, {"outer": grouped(101, g), "inner": grouped(101, g)})
    (loop,) = est.loops
    assert loop.trip == 5 and loop.total == 101 * 5
    assert est.total == loop.total + 1
    ungrouped = analyse(items, {"outer": cost.LoopInfo(101, 100), "inner": cost.LoopInfo(101, 100)})
    assert ungrouped.total > 100 * loop.total     # what the bounds alone would multiply


def test_a_step_runs_from_a_head_to_the_next_head_it_reaches():
    """After the inner loop, the outer's body goes on (4 movs): that tail belongs to the
    inner's last step, which is then the longest (jeq + 4 movs + sub + ja = 7)."""
    g = object()
    inner = counted_loop("inner", 0, "inner_done")
    items = ([I.label("outer"), JumpOp.JEQ.imm(R0, 0, "out")] + inner
             + [I.label("inner_done")] + [I.mov(R2, k) for k in range(4)]
             + [I.ALUOp.SUB.imm(R0, 1), I.ja("outer"), I.label("out"), I.exit_()])
    est = analyse(items, {"outer": grouped(11, g), "inner": grouped(11, g)})
    assert est.loops[0].trip == 7 and est.total == 11 * 7 + 1


def test_side_by_side_loops_of_one_group_are_paid_once():
    """An anchored pattern's runs follow one another: the counter is shared, so the pair
    costs runs × the longer step once; a different group pays on its own."""
    a, b = counted_loop("a", 1, "a_done"), counted_loop("b", 3, "b_done")
    items = a + [I.label("a_done")] + b + [I.label("b_done"), I.exit_()]
    g = object()
    est = analyse(items, {"a": grouped(50, g), "b": grouped(50, g)})
    assert est.total == 50 * (1 + 3 + 2) + 1
    est = analyse(items, {"a": grouped(50, object()), "b": grouped(50, object())})
    assert est.total == 50 * (1 + 1 + 2) + 50 * (1 + 3 + 2) + 1


def test_a_group_member_a_path_can_reach_without_the_first_pays_in_full():
    """If a path can skip the first loop of a group, paying once there would miss it."""
    a, b = counted_loop("a", 1, "a_done"), counted_loop("b", 3, "b_done")
    items = ([JumpOp.JEQ.imm(R0, 0, "skip")] + a + [I.label("a_done"), I.label("skip")] + b
             + [I.label("b_done"), I.exit_()])
    g = object()
    est = analyse(items, {"a": grouped(50, g), "b": grouped(50, g)})
    assert est.total == 1 + 2 * 50 * (1 + 3 + 2) + 1


def test_a_group_inside_a_user_loop_is_paid_every_trip():
    g = object()
    a, b = counted_loop("a", 1, "a_done"), counted_loop("b", 3, "b_done")
    items = ([I.label("h"), JumpOp.JEQ.imm(R0, 0, "out")] + a + [I.label("a_done")] + b
             + [I.label("b_done"), I.ALUOp.SUB.imm(R0, 1), I.ja("h"), I.label("out"), I.exit_()])
    est = analyse(items, {"h": cost.LoopInfo(8, 7), "a": grouped(50, g), "b": grouped(50, g)})
    assert est.total == 8 * (1 + 50 * 6 + 2) + 1


@pytest.mark.parametrize("text", ["99999999999999999999999", "9223372036854775808"])
def test_a_bound_too_large_is_a_located_error(text):
    src = f"function f(n)\n  local i = 0\n  --@bound {text}\n  while i < n do i = i + 1 end\n  return i\nend"
    (d,) = refusal(src, function_hook())
    assert (d.line, d.col) == (3, 3)
    assert "too large" in d.message and "9223372036854775807" in d.message


def test_the_largest_bound_compiles_with_a_budget_to_match():
    src = "function f(n)\n  local i = 0\n  --@bound 9223372036854775807\n  while i < n do i = i + 1 end\n  return i\nend"
    prog = compile_(src, function_hook(), budget=cost.MAX_FIGURE)
    assert prog.estimate.total == cost.MAX_FIGURE


@pytest.mark.parametrize("value", [0, -1, 1 << 63, True, "5"])
def test_check_figure_refuses_what_a_flag_cannot_mean(value):
    assert cost.check_figure(value)


def test_api_options_refuse_out_of_range_figures():
    from luabpf.api import _options
    with pytest.raises(ValueError, match="budget must be between 1"):
        _options(None, "may_goto", 0)
    with pytest.raises(ValueError, match="max_loop must be between 1"):
        _options(10**30, "may_goto")


EVERY_LOOP = """function f(n)
  local s = 0
  while s < n do s = s + 1 end
  repeat s = s - 1 until s <= 0
  while true do
    s = s + 1
    if s > n then break end
  end
  for i = 1, 10 do s = s + i end
  for i = n, 1, -1 do
    for j = 1, i do s = s + j end
  end
  return s
end"""


def all_loops(loops):
    for c in loops:
        yield c
        yield from all_loops(c.inner)


@pytest.mark.parametrize("mode", ["may_goto", "bounded"])
def test_every_loop_reaches_the_bpf_program_with_its_mark(mode):
    """Each source loop is one loop of the final program whose header carries its line and
    bound, in both ways of verifying loops (a `while true` head, empty without may_goto,
    keeps its label)."""
    prog = compile_program(EVERY_LOOP, "t.lua", function_hook(),
                           Options(loops=mode, max_loop=100))
    found = sorted((c.info.span.line, c.info.what, c.info.bound)
                   for c in all_loops(prog.estimate.loops))
    assert found == [(3, "while loop", 100), (4, "repeat loop", 100), (5, "while loop", 100),
                     (9, "for loop", 10), (10, "for loop", 100), (11, "for loop", 100)]
    assert all(c.info is not cost.UNMARKED for c in all_loops(prog.estimate.loops))


TWO_MATCHES = """function filter(hdr, pld)
  local s = tostring(pld)
  local k = s:find("SSH%-[^-%G]+%-([^-%G]+)")
  local v = s:match("a*b")
  return k == nil and v == nil
end"""


def _caps(prog) -> dict[int, int]:
    return {c.info.span.line: c.info.bound for c in prog.estimate.loops if c.info.what == "pattern match"}


def test_matches_without_a_cap_share_the_most_the_budget_holds():
    """Two full-payload matches at the hook's default cap are over the budget: the matches
    without `--@bound` get the largest common cap that fits (not below FITTED_FLOOR)."""
    prog = compile_(TWO_MATCHES)
    caps = _caps(prog)
    fitted = caps[3]
    assert caps == {3: fitted, 4: fitted}
    assert cost.FITTED_FLOOR <= fitted < XdpHook.pattern_steps
    assert prog.estimate.total <= prog.budget
    stated = TWO_MATCHES.replace("  local k", f"  --@bound {fitted + 1}\n  local k").replace(
        "  local v", f"  --@bound {fitted + 1}\n  local v")
    assert refusal(stated)                         # one step more each: over the budget
    assert set(_caps(compile_(TWO_MATCHES, budget=10**7)).values()) == {XdpHook.pattern_steps}


def test_a_stated_cap_is_kept_and_the_others_fit_around_it():
    src = TWO_MATCHES.replace("  local k", "  --@bound 100\n  local k")
    caps = _caps(compile_(src))
    assert caps[4] == 100 and caps[5] > _caps(compile_(TWO_MATCHES))[3]


def test_no_cap_at_the_floor_fits_is_the_budget_error():
    (d,) = refusal(TWO_MATCHES, budget=20_000)
    assert "over --budget (20,000)" in d.message
    assert f"at most {XdpHook.pattern_steps:,} steps" in d.message


@pytest.mark.parametrize("statement", ["if s:find('a*b') then return false end",
                                       "return s:match('a*b') == nil and string.find(s, 'x*y') == nil",
                                       "local a, b = s:find('a*b'), s:match('c-d')"])
def test_a_bound_before_a_statement_caps_each_of_its_matches(statement):
    tail = "" if statement.startswith("return") else "\n  return true"
    src = f"function filter(hdr, pld)\n  local s = tostring(pld)\n  --@bound 77\n  {statement}{tail}\nend"
    caps = [c.info.bound for c in compile_(src).estimate.loops if c.info.what == "pattern match"]
    assert caps and set(caps) == {77}


def test_over_budget_by_luabpfs_own_loop_says_the_script_cannot_bound_it():
    """A filter with no loop of its own over a tiny --budget: the costliest loop is the
    header parser's walk, which no '--@bound' in the script reaches."""
    (d,) = refusal("function filter(hdr, pld)\n  return true\nend", budget=200)
    assert "IPv6 extension-header walk" in d.message
    assert d.hint.startswith("that loop is luabpf's own") and "--@bound" not in d.hint
