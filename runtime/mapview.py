"""A running program's maps and globals, seen from user space as Python mappings.

Owns `MapView` (a script's `map.*` map: integer keys to integer values; per-CPU maps
read as the sum over CPUs, `per_cpu(k)` gives each CPU's value; `load(FILE)` fills it
from a map file, `clear()` empties it) and `GlobalsView`
(the script's top-level globals by name, typed as the script declared them).

Globals live in one array map created mmap-able: a read or a write is one aligned
8-byte access to the same memory the program reads, so changing one global never
races with the program storing another. Both views work from a program's manifest
(`CompiledProgram.manifest()`), so they serve a program this process loaded and one
another process pinned (`luabpf set`).
"""
from __future__ import annotations

import errno
import mmap
import struct
from collections.abc import MutableMapping

from luabpf.runtime import kernel
from luabpf.runtime.errors import BpfError
from luabpf.runtime.mapdata import (ARRAY_KINDS, Entry, MapFileError, MapTypes, lua_sum,
                                    read_map_file)

WORD = struct.Struct("<q")


class MapView(MutableMapping):
    """m[k] -> int (KeyError when absent), m[k] = v, del m[k], iteration over keys.

    Storing a new key in a full hash map raises `BpfError` (errno E2BIG) naming the map.
    `.types` (runtime.mapdata.MapTypes) reads and writes its keys and values as text."""

    def __init__(self, fd: int, name: str, kind: str, max_entries: int):
        self.fd, self.name, self.kind, self.max_entries = fd, name, kind, max_entries
        self.types = MapTypes(name, kind, max_entries)
        self.per_cpu_map = kind.startswith("percpu")
        self._key = struct.Struct("<I" if kind in ARRAY_KINDS else "<q")
        self._value_size = kernel.percpu_value_size(8) if self.per_cpu_map else 8

    def _check_key(self, k) -> bytes:
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"map '{self.name}' has integer keys, not {type(k).__name__}")
        if self.types.key_problem(k) is not None:
            raise KeyError(k)
        return self._key.pack(k)

    def per_cpu(self, k: int) -> list[int]:
        """Each CPU's value of k (one value for maps that are not per-CPU)."""
        raw = kernel.map_lookup(self.fd, self._check_key(k), self._value_size)
        if raw is None:
            raise KeyError(k)
        if not self.per_cpu_map:
            return [WORD.unpack(raw)[0]]
        return [WORD.unpack(v)[0] for v in kernel.split_percpu(raw, 8)]

    def __getitem__(self, k: int) -> int:
        return lua_sum(self.per_cpu(k))       # the sum wraps as Lua's does

    def __setitem__(self, k: int, v: int) -> None:
        """Store v; on a per-CPU map, CPU 0 holds v and every other CPU 0, so the sum is v."""
        key = self._check_key(k)
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"map '{self.name}' holds integers, not {type(v).__name__}")
        if not -(1 << 63) <= v < (1 << 63):
            raise ValueError(f"{v} does not fit a 64-bit Lua integer")
        word = WORD.pack(v)
        if self.per_cpu_map:
            word = b"".join([word] + [WORD.pack(0)] * (kernel.possible_cpus() - 1))
        try:
            kernel.map_update(self.fd, key, word)
        except BpfError as e:
            if e.errno != errno.E2BIG:
                raise
            # the kernel's own words ("Argument list too long") do not say what happened
            raise BpfError(e.errno, e.cmd, detail=self.types.full(k)) from None

    def __delitem__(self, k: int) -> None:
        if self.kind in ARRAY_KINDS:
            raise TypeError(f"'{self.name}' is an array map: its entries cannot be deleted")
        if not kernel.map_delete(self.fd, self._check_key(k)):
            raise KeyError(k)

    def __iter__(self):
        if self.kind in ARRAY_KINDS:
            return iter(range(self.max_entries))
        return (self._key.unpack(k)[0] for k in list(kernel.map_keys(self.fd, self._key.size)))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def entries(self) -> list[tuple[int, int]]:
        """Every (key, value) now (per-CPU values summed, wrapping as Lua's sum does), read
        in batches."""
        return [(k, lua_sum(values)) for k, values in self.per_cpu_entries()]

    def per_cpu_entries(self) -> list[tuple[int, list[int]]]:
        """Every (key, [each CPU's value]) now, read in batches (one value for maps that
        are not per-CPU)."""
        keys, values, n = kernel.map_lookup_batch(self.fd, self._key.size, self._value_size)
        ks = [k for (k,) in self._key.iter_unpack(keys)]
        words = [w for (w,) in WORD.iter_unpack(values)]
        cpus = len(words) // n if n else 1
        return [(k, words[i * cpus:(i + 1) * cpus]) for i, k in enumerate(ks)]

    def clear(self) -> int:
        """Delete every entry; how many were deleted. An array map's entries cannot be
        deleted: each that is not 0 is set to 0 (what it held before any store), and the
        count is of those."""
        if self.kind in ARRAY_KINDS:
            held = [k for k, values in self.per_cpu_entries() if any(values)]
            for k in held:
                self[k] = 0
            return len(held)
        deleted = 0
        for raw in list(kernel.map_keys(self.fd, self._key.size)):
            deleted += kernel.map_delete(self.fd, raw)     # False: the program deleted it first
        return deleted

    def load(self, path: str) -> int:
        """Store the entries of the map file at `path` (docs/running.md, "Map files"); how
        many. The whole file is read and checked first (MapFileError at its first wrong
        line, nothing stored); see `store_entries` for a map that cannot take them all."""
        entries = read_map_file(path, self.types)
        self.store_entries(entries, path)
        return len(entries)

    def store_entries(self, entries: list[Entry], file: str) -> None:
        """Store entries read from `file` (runtime.mapdata.read_map_file). A hash map with
        too little room for the new keys is refused before anything is stored (MapFileError
        at the first entry that does not fit); one that fills up meanwhile (the program
        stores too) stops at the entry refused. An LRU map makes room by evicting: when it
        evicted any of the file's own entries, MapFileError says how many."""
        if not self.types.is_array and not self.types.evicts:
            present = set(self)
            new = [e for e in entries if e.key not in present]
            room = self.max_entries - len(present)
            if len(new) > room:
                raise MapFileError(file, new[room].line,
                                   f"map '{self.name}' is full at this entry: it holds "
                                   f"{self.max_entries} entries at most, {len(present)} before "
                                   f"loading, and the file has {len(new)} new keys; nothing "
                                   "was stored")
        for stored, e in enumerate(entries):
            try:
                self[e.key] = e.value
            except BpfError as err:
                if err.errno != errno.E2BIG:
                    raise
                raise MapFileError(file, e.line, f"{self.types.full(e.key)}; the {stored} "
                                                 "entries before it were stored") from None
        if self.types.evicts:
            lost = [e for e in entries
                    if kernel.map_lookup(self.fd, self._check_key(e.key), self._value_size) is None]
            if lost:
                raise MapFileError(file, lost[0].line,
                                   f"LRU map '{self.name}' evicted {len(lost)} of the file's "
                                   f"{len(entries)} entries (this one first) to make room "
                                   f"while they were stored; give it more than "
                                   f"{self.max_entries} entries")

    def busiest(self, n: int) -> list[tuple[int, int]]:
        """The n entries with the largest values, largest first (what `luabpf run` shows)."""
        entries = self.entries()
        entries.sort(key=lambda kv: (-kv[1], kv[0]))
        return entries[:n]


class GlobalsView(MutableMapping):
    """g[name] -> int or bool; g[name] = value checks the global's type."""

    def __init__(self, fd: int | None, layout: dict[str, dict], size: int):
        self.layout = layout
        self._mem = None if fd is None else mmap.mmap(fd, _page_round(size), mmap.MAP_SHARED,
                                                      mmap.PROT_READ | mmap.PROT_WRITE)

    @staticmethod
    def empty() -> "GlobalsView":
        """The globals of a script that declares none."""
        return GlobalsView(None, {}, 0)

    def _slot(self, name: str) -> dict:
        if name not in self.layout:
            known = ", ".join(sorted(self.layout)) or "none"
            raise KeyError(f"no global '{name}' (the program's globals: {known})")
        return self.layout[name]

    def __getitem__(self, name: str):
        slot = self._slot(name)
        word = WORD.unpack_from(self._mem, slot["offset"])[0]
        return word if slot["kind"] == "int" else word == TRUE_TAG

    def __setitem__(self, name: str, value) -> None:
        slot = self._slot(name)
        if slot["kind"] == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"global '{name}' holds booleans; {value!r} is not one")
            word = TRUE_TAG if value else FALSE_TAG
        else:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"global '{name}' holds integers; {value!r} is not one")
            if not -(1 << 63) <= value < (1 << 63):
                raise ValueError(f"{value} does not fit a 64-bit Lua integer")
            word = value
        WORD.pack_into(self._mem, slot["offset"], word)

    def __delitem__(self, name: str) -> None:
        raise TypeError("globals cannot be deleted; assign them a value")

    def __iter__(self):
        return iter(self.layout)

    def __len__(self) -> int:
        return len(self.layout)

    def close(self) -> None:
        if self._mem is not None:
            self._mem.close()
            self._mem = None


FALSE_TAG, TRUE_TAG = 1, 2        # values.FALSE, values.TRUE: how a boolean global is stored


def _page_round(n: int) -> int:
    return (n + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
