"""A running program's maps and globals, seen from user space as Python mappings.

Owns `MapView` (a script's `map.*` map: integer keys to integer values; per-CPU maps
read as the sum over CPUs, `per_cpu(k)` gives each CPU's value) and `GlobalsView`
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

ARRAY_KINDS = ("array", "percpu_array")
WORD = struct.Struct("<q")


class MapView(MutableMapping):
    """m[k] -> int (KeyError when absent), m[k] = v, del m[k], iteration over keys.

    Storing a new key in a full hash map raises `BpfError` (errno E2BIG) naming the map."""

    def __init__(self, fd: int, name: str, kind: str, max_entries: int):
        self.fd, self.name, self.kind, self.max_entries = fd, name, kind, max_entries
        self.per_cpu_map = kind.startswith("percpu")
        self._key = struct.Struct("<I" if kind in ARRAY_KINDS else "<q")
        self._value_size = kernel.percpu_value_size(8) if self.per_cpu_map else 8

    def _check_key(self, k) -> bytes:
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"map '{self.name}' has integer keys, not {type(k).__name__}")
        if self.kind in ARRAY_KINDS and not 0 <= k < self.max_entries:
            raise KeyError(k)
        if not -(1 << 63) <= k < (1 << 63):
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
        total = sum(self.per_cpu(k))
        return (total + (1 << 63)) % (1 << 64) - (1 << 63)       # the sum wraps as Lua's does

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
            raise BpfError(e.errno, e.cmd, detail=f"map '{self.name}' is full: it holds "
                                                  f"{self.max_entries} entries; key {k} was not "
                                                  "stored") from None

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
        keys, values, n = kernel.map_lookup_batch(self.fd, self._key.size, self._value_size)
        ks = [k for (k,) in self._key.iter_unpack(keys)]
        words = [w for (w,) in WORD.iter_unpack(values)]
        if self.per_cpu_map:
            cpus = len(words) // n if n else 1
            words = [(sum(words[i * cpus:(i + 1) * cpus]) + (1 << 63)) % (1 << 64) - (1 << 63)
                     for i in range(n)]
        return list(zip(ks, words))

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
