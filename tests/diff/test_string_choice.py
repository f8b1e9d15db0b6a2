"""Differential tests: constant strings chosen at run time (`c and "yes" or "no"`,
`x or "default"`, a local that is reassigned a string) against Lua 5.4 (lupa).

Generated expressions mix constant strings with nil, false and integers through
`and`/`or` and reassigned locals, and consume them with `#`, `==`, `~=`, `not`,
`s:byte(k)`, `s:len()`, `s:sub(i, j) == …`, passing through a helper function; the
results (integers, booleans) and the runtime errors (`#nil`, indexing a number …)
must be Lua's. Before, every such program was refused ("a constant string can only be
held by a local that is never reassigned").
"""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .test_differential import agree, examples

pytestmark = pytest.mark.kernel

WORDS = ['""', '"a"', '"ab"', '"abc"', '"b"', '"ba"']
CONDS = ["a > 1", "b == 2", "a ~= b", "a < 0", "b >= a"]


def choices(depth: int) -> st.SearchStrategy[str]:
    """An expression whose value is a constant string, nil, false or an integer, which
    one decided at run time."""
    leaf = st.one_of(st.sampled_from(WORDS), st.sampled_from(WORDS), st.sampled_from(WORDS),
                     st.sampled_from(["nil", "false", "a"]))
    if depth == 0:
        return leaf
    sub = choices(depth - 1)
    return st.one_of(
        leaf,
        st.builds(lambda c, x, y: f"({c} and {x} or {y})", st.sampled_from(CONDS), sub, sub),
        st.builds(lambda c, x: f"({c} and {x})", st.sampled_from(CONDS), sub),
        st.builds(lambda x, y: f"({x} or {y})", sub, sub),
        st.builds(lambda x: f"pick({x})", sub),
    )


def strings(depth: int) -> st.SearchStrategy[str]:
    """A choice whose every alternative is a string (so string operations cannot fail)."""
    word = st.sampled_from(WORDS)
    if depth == 0:
        return word
    sub = strings(depth - 1)
    return st.one_of(
        word,
        st.builds(lambda c, x, y: f"({c} and {x} or {y})", st.sampled_from(CONDS), sub, sub),
        st.builds(lambda x, y: f"((a > 5 and nil or {x}) or {y})", sub, sub),
    )


def consumers() -> st.SearchStrategy[str]:
    any_value, string = choices(2), strings(2)
    return st.one_of(
        st.builds(lambda x: f"#{x}", string),
        # may raise, as Lua does (a value that cannot be a string is a compile error)
        st.builds(lambda c, x, w: f"#({c} and {x} or {w})", st.sampled_from(CONDS), any_value,
                  st.sampled_from(WORDS)),
        st.builds(lambda x, y: f"{x} == {y}", any_value, any_value),
        st.builds(lambda x, w: f"{x} ~= {w}", any_value, st.sampled_from(WORDS)),
        st.builds(lambda x: f"not {x}", any_value),
        st.builds(lambda x, k: f"({x}):byte({k})", string, st.integers(-4, 4)),
        st.builds(lambda c, x, w: f"({c} and {x} or {w}):len()", st.sampled_from(CONDS), any_value,
                  st.sampled_from(WORDS)),
        st.builds(lambda x, i, j, w: f"({x}):sub({i}, {j}) == {w}", string, st.integers(-3, 3),
                  st.integers(-3, 3), st.sampled_from(WORDS)),
        st.builds(lambda x, w: f"string.len({x}) + #{w}", string, st.sampled_from(WORDS)),
    )


PICK = "function pick(v)\n  return v\nend\n"


@examples(300)
@given(consumers(), st.integers(-2, 7), st.integers(-2, 7))
def test_choices_of_constant_strings_agree_with_lua(expr, a, b):
    agree(PICK + f"function f(a, b)\n  return {expr}\nend\n", a, b)


@examples(150)
@given(choices(2), choices(1), st.sampled_from(CONDS), st.sampled_from(WORDS),
       st.integers(-2, 7), st.integers(-2, 7))
def test_reassigned_locals_agree_with_lua(first, then, cond, word, a, b):
    src = (PICK + "function f(a, b)\n"
           f"  local s = {first}\n"
           f"  if {cond} then\n    s = {then}\n  end\n"
           "  local n = 0\n"
           "  for i = 1, 3 do\n"
           f"    if s == {word} then n = n + i end\n"
           f"    s = i == 2 and \"ab\" or s\n"
           "  end\n"
           "  return n, s == \"ab\", not s\n"
           "end\n")
    agree(src, a, b)


CASES = [
    # the shapes, with constants only
    ('local x = a > 1 and "abc" or nil\n  return (x or "default") == "abc", #(x or "")', (2, 0)),
    ('local x = a > 1 and "abc" or nil\n  return (x or "default") == "abc", #(x or "")', (0, 0)),
    ('local s = a and "yes" or "no"\n  s = b > 0 and s or "neg"\n  return #s, s:byte(1)', (1, -1)),
    # the length of something that is not a string on this run: Lua's error, its line
    ('local s = a > 0 and "x" or nil\n  return #s', (0, 0)),
    ('local s = a > 0 and "x" or a\n  return s:len()', (0, 0)),
    # ordering a string with a number
    ('local s = a > 0 and "x" or a\n  return s < 3', (1, 0)),
    ('local s = a > 0 and "x" or a\n  return s < 3', (-1, 0)),
]


@pytest.mark.parametrize("body, args", CASES)
def test_string_choice_cases(body, args):
    agree(f"function f(a, b)\n  {body}\nend\n", *args)
