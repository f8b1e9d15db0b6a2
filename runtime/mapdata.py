"""A map's keys and values as text: on the command line (`luabpf map`) and in map files
(`luabpf run --map NAME=@FILE`, `luabpf map … load FILE`, `MapView.load`).

Owns `MapTypes` (a map's name, kind and size, and what its keys and values are: how
each is read from text and written as text, and which of them fit the map), the map
file reader (`read_map_file`) and its errors (`MapDataError`, `MapFileError`). It
touches no kernel: a file is read and checked against the map's types before any of
it is written (docs/running.md, "Map files").

Keys and values are 64-bit integers, the maps' types today; an array map's keys are
0 to n-1. An integer is written as `luabpf set` takes one (`parse_integer`): decimal,
or hex (`0x…`), which wraps around to a 64-bit value as Lua's hex literals do.

The file format: one entry a line, `KEY VALUE`, or `KEY` alone for value 1 (a
set-like map: the program asks `m[k] ~= nil`); `#` starts a comment, to the end of
the line; blank lines are skipped. A key given twice with the same value is one entry;
with another value it is an error (which one was meant cannot be known). A file holds
at most as many distinct keys as the map holds entries.
"""
from __future__ import annotations

from dataclasses import dataclass

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
ARRAY_KINDS = ("array", "percpu_array")


def lua_sum(values) -> int:
    """A sum of 64-bit integers wrapped as Lua's + wraps it (a per-CPU map's value)."""
    return (sum(values) + (1 << 63)) % (1 << 64) - (1 << 63)


def parse_integer(text: str) -> int | None:
    """An integer as `luabpf set` takes one: decimal, or `0x…` hex wrapping around to 64
    bits as Lua's hex literals do. None when the text is no integer; OverflowError (its
    reason) for a decimal outside the 64-bit range."""
    try:
        value = int(text, 0)
    except ValueError:
        return None
    if text.strip().lower().lstrip("+-").startswith("0x"):
        return (value + (1 << 63)) % (1 << 64) - (1 << 63)
    if not INT64_MIN <= value <= INT64_MAX:
        raise OverflowError(f"{text.strip()} does not fit a 64-bit integer")
    return value


class MapDataError(ValueError):
    """A key or value that is not one of the map's, or an entry the map cannot take;
    str() is one sentence. `usage` is true when the command line is at fault rather than
    the map or a file's contents: text that is no value of any type, a file that cannot
    be read (the CLI's exit 2)."""

    def __init__(self, message: str, usage: bool = False):
        super().__init__(message)
        self.usage = usage


class MapFileError(MapDataError):
    """A map file that cannot be read, or is wrong at `line` (None: the file as a whole);
    str() is `FILE:LINE: reason`."""

    def __init__(self, file: str, line: int | None, reason: str):
        super().__init__(f"{file}:{line}: {reason}" if line is not None else f"{file}: {reason}",
                         usage=line is None)
        self.file, self.line, self.reason = file, line, reason


@dataclass(frozen=True)
class MapTypes:
    """A script's map as user space sees it: its name, kind (a key of compiler/lib/maps.py's
    KINDS), size, and the types of its keys and values."""
    name: str
    kind: str
    max_entries: int

    @classmethod
    def of(cls, name: str, entry: dict) -> "MapTypes":
        """From the map's entry in a program's manifest."""
        return cls(name, entry["kind"], entry["max_entries"])

    @property
    def is_array(self) -> bool:
        return self.kind in ARRAY_KINDS

    @property
    def per_cpu(self) -> bool:
        return self.kind.startswith("percpu")

    @property
    def evicts(self) -> bool:
        """An LRU map makes room for a new key by evicting an old one: it is never full."""
        return self.kind == "lru"

    def key_problem(self, k: int) -> str | None:
        """Why the integer k is not a key of this map, in one sentence; None when it is."""
        if self.is_array and not 0 <= k < self.max_entries:
            return (f"key {k} is outside array map '{self.name}' "
                    f"(keys 0 to {self.max_entries - 1})")
        if not INT64_MIN <= k <= INT64_MAX:
            return f"key {k} does not fit a 64-bit integer, the keys of map '{self.name}'"
        return None

    def key_from_text(self, text: str) -> int:
        k = self._integer(text, "key", f"the keys of map '{self.name}'")
        problem = self.key_problem(k)
        if problem is not None:
            raise MapDataError(problem)
        return k

    def value_from_text(self, text: str) -> int:
        return self._integer(text, "value", f"the values of map '{self.name}'")

    def _integer(self, text: str, what: str, whose: str) -> int:
        try:
            value = parse_integer(text)
        except OverflowError:
            raise MapDataError(f"{what} {text.strip()} does not fit a 64-bit integer, {whose} "
                               "(decimal numbers do not wrap)") from None
        if value is None:
            raise MapDataError(f"{what} {text!r} is not an integer, as {whose} are",
                               usage=True)
        return value

    def key_text(self, k: int) -> str:
        return str(k)

    def value_text(self, v: int) -> str:
        return str(v)

    def full(self, k: int) -> str:
        """The sentence for a new key the kernel refused (E2BIG): the map is full."""
        return (f"map '{self.name}' is full: it holds {self.max_entries} entries; key "
                f"{self.key_text(k)} was not stored")


@dataclass(frozen=True)
class Entry:
    key: int
    value: int
    line: int          # where the file gives it


def read_map_file(path: str, types: MapTypes) -> list[Entry]:
    """The entries of a map file, each checked against `types` (MapFileError at the first
    wrong line); in file order, each key once."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise MapFileError(path, None, "no such file") from None
    except IsADirectoryError:
        raise MapFileError(path, None, "is a directory, not a map file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MapFileError(path, None, f"cannot read it ({e})") from None
    return parse_map_lines(lines, types, path)


def parse_map_lines(lines, types: MapTypes, file: str) -> list[Entry]:
    """The entries of a map file's lines (read_map_file without the file)."""
    entries: list[Entry] = []
    seen: dict[int, Entry] = {}
    for number, raw in enumerate(lines, 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) > 2:
            raise MapFileError(file, number, f"{len(fields)} fields; a line holds one entry: "
                                             "KEY VALUE, or KEY alone (value 1)")
        try:
            key = types.key_from_text(fields[0])
            value = types.value_from_text(fields[1]) if len(fields) == 2 else 1
        except MapDataError as e:
            raise MapFileError(file, number, str(e)) from None
        before = seen.get(key)
        if before is not None:
            if before.value != value:
                raise MapFileError(file, number, f"key {types.key_text(key)} again, with another "
                                                 f"value (line {before.line} gives "
                                                 f"{types.value_text(before.value)})")
            continue
        if len(entries) == types.max_entries:
            raise MapFileError(file, number, f"one entry too many: map '{types.name}' holds "
                                             f"{types.max_entries} entries at most")
        entry = Entry(key, value, number)
        seen[key] = entry
        entries.append(entry)
    return entries
