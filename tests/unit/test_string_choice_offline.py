"""Values chosen at run time where no kernel is needed: the choices kernel Lua refuses are
located compile errors, and code grows with the strings a value may be, not with the
script. (Choices run in the kernel against Lua 5.4 are
tests/kernel/test_string_choice_kernel.py.)"""
from __future__ import annotations

import pytest

import luabpf

FILE = "choice.lua"


def only_error(src: str, hook="xdp"):
    with pytest.raises(luabpf.CompileError) as info:
        luabpf.compile(src, FILE, hook=hook)
    [d] = info.value.diagnostics
    return d


def test_two_layouts_in_one_variable_is_a_located_error_naming_them():
    d = only_error("function filter(hdr, pld)\n  local l4 = hdr.tcp or hdr.udp\n"
                   "  return l4 and l4.dport == 53\nend\n")
    assert (d.line, d.col) == (2, 14)
    assert "may be a tcp or a udp view" in d.message or "may be a udp or a tcp view" in d.message
    assert "hdr.tcp and hdr.tcp.dport or hdr.udp and hdr.udp.dport" in d.hint


def test_a_library_value_chosen_at_run_time_is_a_located_error():
    d = only_error("function filter(hdr, pld)\n  local h = #pld > 1 and hdr or hdr\n"
                   "  return h.tcp == nil\nend\n")
    assert (d.line, d.col) == (2, 13)
    assert d.message.startswith("a library value (hdr, a map, a layout, a module) cannot be "
                                "chosen at run time")


@pytest.mark.parametrize("ret, what", [('"text"', "string"), ("pld", "string"),
                                       ('#pld > 1 and "a" or "b"', "string"),
                                       ("hdr.ip", "nil or layout")])
@pytest.mark.parametrize("hook", ["xdp", "tc"])
def test_returning_a_string_from_a_filter_is_a_located_error(ret, what, hook):
    d = only_error(f"function filter(hdr, pld)\n  if #pld > 9 then return false end\n"
                   f"  return {ret}\nend\n", hook)
    assert (d.line, d.col) == (3, 3)
    article = "an" if hook == "xdp" else "a"
    assert d.message == (f"'filter' returns a {what} as value #1: an entry function of the "
                         f"{hook} hook returns true or nil (pass), false (drop) or {article} "
                         f"{hook}.* verdict")


def test_returning_a_string_from_a_called_function_is_a_located_error():
    with pytest.raises(luabpf.CompileError) as info:
        luabpf.run_function("function f(a)\n  return a, a > 1 and \"big\" or \"small\"\nend\n",
                            "f", 2)
    [d] = info.value.diagnostics
    assert (d.line, d.col) == (2, 3)
    assert "'f' returns a string as value #2: an entry function of the function hook returns " \
           "integers, booleans or nil" in d.message


def test_code_grows_with_the_strings_a_value_may_be_not_with_the_script():
    """Each operation splits over the constants its value may hold, not every constant
    string of the script."""
    many = "\n".join(f'  local w{i} = #pld > {i} and "w{i}" or "v{i}"\n'
                     f'  if w{i} == pld:sub(1, 2) then return false end' for i in range(12))
    one = '  local w = #pld > 1 and "w" or "v"\n  if w == pld:sub(1, 2) then return false end'
    size = {}
    for name, body in (("one", one), ("many", many)):
        prog = luabpf.compile(f"function filter(hdr, pld)\n{body}\n  return true\nend\n", FILE,
                              hook="xdp")
        size[name] = prog.insn_count
    assert size["many"] < 6 * size["one"]          # 12 of them: about 3x, not 20x


def test_a_field_of_a_header_or_a_string_is_a_located_error():
    d = only_error("function filter(hdr, pld)\n  local t = hdr.tcp or \"none\"\n"
                   "  return t.dport == 5\nend\n")
    assert (d.line, d.col) == (3, 10)
    assert d.message == "indexing a string value is not available in kernel Lua"
