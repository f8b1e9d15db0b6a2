"""Map files and map keys and values as text (runtime/mapdata.py), and the `luabpf map` and
`luabpf run --map` usage errors found before anything is opened or compiled.

The reader is checked line by line against docs/running.md's "Map files": entries,
set-like lines, comments, blank lines, hex and negative integers, and each error at
FILE:LINE with its reason.
"""
from __future__ import annotations

import pytest

from luabpf.runtime.mapdata import (Entry, MapDataError, MapFileError, MapTypes, lua_sum,
                                    parse_integer, parse_map_lines, read_map_file)

from cli_runner import json_failure, run_luabpf

HASH = MapTypes("blocked", "hash", 4)
ARRAY = MapTypes("limits", "array", 8)
PERCPU = MapTypes("hits", "percpu_array", 2)


def entries(text: str, types: MapTypes = HASH) -> list[tuple[int, int, int]]:
    return [(e.key, e.value, e.line) for e in parse_map_lines(text.split("\n"), types, "f.txt")]


def error(text: str, types: MapTypes = HASH) -> MapFileError:
    with pytest.raises(MapFileError) as e:
        parse_map_lines(text.split("\n"), types, "f.txt")
    return e.value


# ---- integers as `luabpf set` writes them ------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("0", 0), ("53", 53), ("-7", -7), ("+7", 7), (" 12 ", 12), ("0x1bb", 443), ("0X10", 16),
    ("-0x10", -16), ("9223372036854775807", (1 << 63) - 1), ("-9223372036854775808", -(1 << 63)),
    ("0xffffffffffffffff", -1), ("0x8000000000000000", -(1 << 63)),   # hex wraps, as in Lua
])
def test_integers_are_read_as_luabpf_set_reads_them(text, value):
    assert parse_integer(text) == value


@pytest.mark.parametrize("text", ["", "x", "1.5", "1e3", "true", "nil", "0x", "5=3", "--5"])
def test_text_that_is_no_integer_is_none(text):
    assert parse_integer(text) is None


@pytest.mark.parametrize("text", ["9223372036854775808", "-9223372036854775809", "1" * 30])
def test_decimals_do_not_wrap(text):
    with pytest.raises(OverflowError):
        parse_integer(text)


def test_a_per_cpu_sum_wraps_as_luas_addition_does():
    assert lua_sum([(1 << 63) - 1, 1]) == -(1 << 63) and lua_sum([3, 4, -2]) == 5


# ---- a map's keys and values ----------------------------------------------------------

def test_keys_and_values_of_a_hash_map():
    assert HASH.key_from_text("0x35") == 53 and HASH.value_from_text("-1") == -1
    assert HASH.key_text(-5) == "-5" and HASH.value_text(7) == "7"
    assert HASH.key_problem(-(1 << 63)) is None
    assert HASH.key_problem(1 << 63) == ("key 9223372036854775808 does not fit a 64-bit "
                                         "integer, the keys of map 'blocked'")


def test_array_keys_are_0_to_n_minus_1():
    assert ARRAY.key_from_text("7") == 7
    for text, k in (("8", 8), ("-1", -1), ("0xffffffff", 0xffffffff), ("0xffffffffffffffff", -1)):
        with pytest.raises(MapDataError) as e:
            ARRAY.key_from_text(text)
        assert str(e.value) == f"key {k} is outside array map 'limits' (keys 0 to 7)"
        assert not e.value.usage


@pytest.mark.parametrize("reader,text,message,usage", [
    ("key", "abc", "key 'abc' is not an integer, as the keys of map 'blocked' are", True),
    ("key", "true", "key 'true' is not an integer, as the keys of map 'blocked' are", True),
    ("value", "1.5", "value '1.5' is not an integer, as the values of map 'blocked' are", True),
    ("key", "99999999999999999999", "key 99999999999999999999 does not fit a 64-bit integer, "
     "the keys of map 'blocked' (decimal numbers do not wrap)", False),
    ("value", "-9223372036854775809", "value -9223372036854775809 does not fit a 64-bit "
     "integer, the values of map 'blocked' (decimal numbers do not wrap)", False),
])
def test_text_that_is_not_a_key_or_value_of_the_map(reader, text, message, usage):
    read = HASH.key_from_text if reader == "key" else HASH.value_from_text
    with pytest.raises(MapDataError) as e:
        read(text)
    assert str(e.value) == message and e.value.usage is usage


def test_a_full_map_in_one_sentence():
    assert HASH.full(9) == "map 'blocked' is full: it holds 4 entries; key 9 was not stored"


def test_kinds():
    assert ARRAY.is_array and not ARRAY.per_cpu and PERCPU.is_array and PERCPU.per_cpu
    assert not HASH.is_array and not HASH.evicts and MapTypes("l", "lru", 4).evicts
    assert MapTypes.of("m", {"kind": "percpu_hash", "max_entries": 9}) == \
        MapTypes("m", "percpu_hash", 9)


# ---- the file format ------------------------------------------------------------------

def test_entries_set_like_lines_comments_and_blank_lines():
    text = ("# blocked ports\n"
            "\n"
            "53\n"
            "  0x1bb   7   # https, value 7\n"
            "\t-4\t-0x10\n"
            "   \n"
            "#80 1\n"
            "22 # ssh")
    assert entries(text) == [(53, 1, 3), (443, 7, 4), (-4, -16, 5), (22, 1, 8)]


def test_windows_line_ends_and_a_missing_last_newline():
    assert entries("1 2\r\n3\r\n") == [(1, 2, 1), (3, 1, 2)]


def test_an_empty_file_has_no_entries():
    assert entries("") == [] and entries("# nothing\n\n") == []


def test_a_key_again_with_the_same_value_is_one_entry():
    assert entries("5\n6 1\n5 1\n5") == [(5, 1, 1), (6, 1, 2)]


def test_a_key_again_with_another_value_is_an_error():
    e = error("5 1\n6\n0x5 2")
    assert (e.file, e.line) == ("f.txt", 3)
    assert e.reason == "key 5 again, with another value (line 1 gives 1)"
    assert str(e) == "f.txt:3: key 5 again, with another value (line 1 gives 1)"


def test_three_fields_are_an_error():
    e = error("1 2\n3 4 5")
    assert str(e) == "f.txt:2: 3 fields; a line holds one entry: KEY VALUE, or KEY alone (value 1)"


@pytest.mark.parametrize("text,line,reason", [
    ("1\nport 5", 2, "key 'port' is not an integer, as the keys of map 'blocked' are"),
    ("1\n2 x", 2, "value 'x' is not an integer, as the values of map 'blocked' are"),
    ("1=2", 1, "key '1=2' is not an integer, as the keys of map 'blocked' are"),
    ("\n\n1.5 2", 3, "key '1.5' is not an integer, as the keys of map 'blocked' are"),
    ("18446744073709551616 1", 1, "key 18446744073709551616 does not fit a 64-bit integer, "
     "the keys of map 'blocked' (decimal numbers do not wrap)"),
])
def test_a_wrong_key_or_value_is_located(text, line, reason):
    e = error(text)
    assert (e.line, e.reason) == (line, reason) and not e.usage


def test_an_array_index_out_of_bounds_is_located():
    e = error("0 1\n7 2\n8 3", ARRAY)
    assert str(e) == "f.txt:3: key 8 is outside array map 'limits' (keys 0 to 7)"


def test_more_keys_than_the_map_holds_is_an_error_at_the_first_that_does_not_fit():
    assert len(entries("1\n2\n3\n4\n4")) == 4
    e = error("1\n2\n# a comment\n3\n4\n2\n5\n6")
    assert str(e) == "f.txt:7: one entry too many: map 'blocked' holds 4 entries at most"


def test_read_map_file(tmp_path):
    path = tmp_path / "ports.txt"
    path.write_text("53\n443 2\n")
    assert read_map_file(str(path), HASH) == [Entry(53, 1, 1), Entry(443, 2, 2)]


def test_a_file_that_cannot_be_read(tmp_path):
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(MapFileError) as e:
        read_map_file(missing, HASH)
    assert str(e.value) == f"{missing}: no such file" and e.value.line is None and e.value.usage
    with pytest.raises(MapFileError) as e:
        read_map_file(str(tmp_path), HASH)
    assert str(e.value) == f"{tmp_path}: is a directory, not a map file" and e.value.usage
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"1 2\n\xff\xfe\n")
    with pytest.raises(MapFileError) as e:
        read_map_file(str(binary), HASH)
    assert str(e.value).startswith(f"{binary}: cannot read it (") and e.value.usage


# ---- usage errors of the commands, before anything is opened ---------------------------

@pytest.mark.parametrize("argv,message", [
    (["dump", "5"], "dump takes no arguments: luabpf map TARGET NAME dump"),
    (["get"], "get takes KEY: luabpf map TARGET NAME get KEY"),
    (["set", "1"], "set takes KEY and VALUE: luabpf map TARGET NAME set KEY VALUE"),
    (["del", "1", "2"], "del takes KEY: luabpf map TARGET NAME del KEY"),
    (["clear", "x"], "clear takes no arguments: luabpf map TARGET NAME clear"),
    (["load"], "load takes FILE: luabpf map TARGET NAME load FILE"),
])
def test_map_operands_are_counted_first(argv, message):
    r = run_luabpf("map", "no-such-run", "m", *argv)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"luabpf: {message}\n")
    [d] = json_failure(run_luabpf("map", "no-such-run", "m", *argv, "--json"), 2)
    assert d["message"] == message


def test_an_unknown_map_action_is_a_usage_error():
    r = run_luabpf("map", "t", "m", "show")
    assert r.returncode == 2 and r.stderr.startswith("usage: luabpf map ")
    assert "argument ACTION: invalid choice: 'show'" in r.stderr


@pytest.mark.parametrize("flag", ["blocked", "blocked=ports.txt", "=@ports.txt", "blocked=@",
                                  "blocked@ports.txt"])
def test_a_malformed_map_flag_is_a_usage_error(flag):
    r = run_luabpf("run", "nothing.lua", "--xdp", "eth0", "--map", flag)
    assert r.returncode == 2, r.stderr
    assert r.stderr == (f"luabpf: --map {flag!r}: write NAME=@FILE (the map's name, then @ and "
                        "the path of a map file)\n")


def test_one_map_twice_is_a_usage_error():
    r = run_luabpf("run", "nothing.lua", "--xdp", "eth0", "--map", "a=@x", "--map", "b=@y",
                   "--map", "a=@z", "--json")
    [d] = json_failure(r, 2)
    assert d["message"] == "--map a: given twice; one file fills a map"
