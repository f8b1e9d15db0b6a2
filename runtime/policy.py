"""A CPU-frequency policy at work: the user-space half of `throttle(cpu, cur, max, min)`.

Owns `Policy`, the glue between the policy's programs (stdlib/cpufreq.lua, loaded as a
`LoadedScript`) and the cpufreq actuator (`runtime/cpufreq.py`). Each `tick()`, once
per interval:
- it feeds the kernel: `cur` (scaling_cur_freq) and the temperature of every CPU
  (`min`/`max` once, at start), into the per-CPU arrays the timer's program reads;
- it applies what the policy asked: a CPU whose request counter moved has a new
  `cpufreq.target` request (frequency and relation); the actuator resolves it, and
  rate limits the writes; pending ones are flushed.

Decision: requests travel through per-CPU arrays, not events: only the latest request
of a CPU matters, and a policy that asks every 20 ms on every CPU can neither fill a
ring buffer nor make user space fall behind. A CPU the policy runs on but the tree
does not have (no cpufreq directory) is fed zeros and its requests are ignored,
counted in `ignored`.
"""
from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field

from luabpf.compiler.hooks.cpufreq import CPU_MAP, FIELDS, MAX_CPUS, OFF, RECORD_SIZE
from luabpf.runtime import kernel
from luabpf.runtime.cpufreq import Actuator, Decision, SysfsTree

RELATION_NAMES = {1: "<=", 2: ">="}
KEY = struct.Struct("<I")
RECORD = struct.Struct("<" + "q" * len(FIELDS))


@dataclass
class Policy:
    loaded: object                     # runtime.load.LoadedScript of the policy's two programs
    tree: SysfsTree
    actuator: Actuator
    cpus: list[int]                    # the CPUs the timer runs the policy on
    seen: dict[int, int] = field(default_factory=dict)      # cpu → request count applied
    decisions: list[Decision] = field(default_factory=list)
    ignored: int = 0
    _mapping: object = None
    _words: object = None

    def record(self, cpu: int) -> dict[str, int]:
        """The CPU's record (compiler/hooks/cpufreq.py's FIELDS), as the kernel has it now."""
        raw = kernel.map_lookup(self.loaded.map_fds[CPU_MAP], KEY.pack(cpu), RECORD_SIZE)
        return dict(zip(FIELDS, RECORD.unpack(raw)))

    def _write(self, field: str, cpu: int, value: int) -> None:
        """One field of the CPU's record, written in place: the kernel programs write the
        others meanwhile (a whole-record update would undo their stores)."""
        self._mem(cpu)[OFF[field] // 8] = value

    def _read(self, field: str, cpu: int) -> int:
        return self._mem(cpu)[OFF[field] // 8]

    def _mem(self, cpu: int) -> memoryview:
        if self._mapping is None:
            size = (RECORD_SIZE * MAX_CPUS + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
            self._mapping = mmap.mmap(self.loaded.map_fds[CPU_MAP], size)
            self._words = memoryview(self._mapping).cast("q")
        base = cpu * RECORD_SIZE // 8
        return self._words[base: base + len(FIELDS)]

    def start(self) -> "Policy":
        """Feed min and max, switch the governors (the actuator), feed the first values."""
        have = set(self.tree.cpus())
        for cpu in self.cpus:
            lo, hi = self.tree.limits(cpu) if cpu in have else (0, 0)
            self._write("min", cpu, lo)
            self._write("max", cpu, hi)
            self.seen[cpu] = self._read("requests", cpu)
        self.actuator.start()
        self.feed()
        return self

    def feed(self) -> None:
        have = set(self.tree.cpus())
        for cpu in self.cpus:
            if cpu in have:
                self._write("cur", cpu, self.tree.cur(cpu))
                self._write("temp", cpu, self.tree.temp_c(cpu) or 0)

    def tick(self) -> list[Decision]:
        """Apply new requests, flush pending ones, feed the next interval's values."""
        made = []
        have = set(self.tree.cpus())
        for cpu in self.cpus:
            count = self._read("requests", cpu)
            if count == self.seen.get(cpu):
                continue
            self.seen[cpu] = count
            freq = self._read("target", cpu)
            relation = RELATION_NAMES.get(self._read("relation", cpu))
            if cpu not in have or relation is None:
                self.ignored += 1
                continue
            made.append(self.actuator.apply(cpu, freq, relation))
        made += self.actuator.flush()
        self.decisions += made
        del self.decisions[:-64]
        self.feed()
        return made

    def stop(self) -> None:
        """Put the governors back (idempotent) and let go of the records' mapping."""
        try:
            self.actuator.stop()
        finally:
            if self._mapping is not None:
                self._words.release()
                self._mapping.close()
                self._mapping = self._words = None

    def loads(self) -> dict[int, int]:
        """The load each CPU's last interval had, as the kernel measured it (percent)."""
        return {cpu: self._read("load", cpu) for cpu in self.cpus}

    def frequencies(self) -> dict[int, int]:
        have = set(self.tree.cpus())
        return {cpu: self.tree.cur(cpu) for cpu in self.cpus if cpu in have}
