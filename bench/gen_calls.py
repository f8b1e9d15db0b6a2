"""Generators of the compile-time benchmark's scripts (bench/compile_rules.py) and of
the tests that keep them compiling: a rule file of N one-rule helper functions called
from a filter, and a call tree that doubles at each level."""
from __future__ import annotations


def rule_file(n: int) -> str:
    """N helpers `rule_k(port, proto)`, each one rule, and a filter that calls each once."""
    out = []
    for k in range(n):
        out.append(f"local function rule_{k}(port, proto)\n"
                   f"  return proto == {6 if k % 2 else 17} and port == {1000 + k}\n"
                   f"end\n")
    out.append("function filter(hdr, pld)\n"
               "  local port, proto = 0, 0\n"
               "  if hdr.tcp then port, proto = hdr.tcp.dport, 6\n"
               "  elseif hdr.udp then port, proto = hdr.udp.dport, 17 end\n")
    for k in range(n):
        out.append(f"  if rule_{k}(port, proto) then return false end\n")
    out.append("  return true\nend\n")
    return "".join(out)


def doubling_tree(levels: int, entry: str = "filter") -> str:
    """f0(x) = x + 1; f(k)(x) = f(k-1)(x) + f(k-1)(x + k): 2^levels leaf calls."""
    out = ["local function f0(x)\n  return x + 1\nend\n"]
    for k in range(1, levels + 1):
        out.append(f"local function f{k}(x)\n  return f{k - 1}(x) + f{k - 1}(x + {k})\nend\n")
    if entry == "filter":
        out.append(f"function filter(hdr, pld)\n  return f{levels}(#pld) % 5 ~= 0\nend\n")
    else:
        out.append(f"function {entry}(x)\n  return f{levels}(x)\nend\n")
    return "".join(out)


def doubling_tree_value(levels: int, x: int) -> int:
    """What Lua 5.4 returns for doubling_tree(levels, entry)(x), wrapped to 64 bits."""
    def f(k, x):
        if k == 0:
            return x + 1
        return f(k - 1, x) + f(k - 1, x + k)
    # closed form would do; levels are small enough for memoised recursion on (k, x)
    from functools import lru_cache
    g = lru_cache(maxsize=None)(f)
    v = g(levels, x)
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v
