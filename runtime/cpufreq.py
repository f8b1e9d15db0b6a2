"""The cpufreq actuator: applies a policy's frequency requests to cpufreq's sysfs.

Owns `SysfsTree` (reading and writing one /sys-shaped tree: the CPUs that have
cpufreq, their frequencies, limits, governors and thermal zones), `resolve` (what
`cpufreq.target(cpu, freq, '<=' | '>=')` means), `Actuator` (governor switching,
writing requests, rate limiting) and `make_simulated` (a fake tree for tests,
demos and machines without a cpufreq driver). Pure file I/O: does not own the
kernel program that decides (the `throttle` hook) nor the loop that calls it
every interval (`luabpf run --cpufreq`).

Tree layout, relative to the root (`/sys`, or `--sysfs-root DIR`):
    devices/system/cpu/cpuN/cpufreq/    scaling_available_frequencies, cpuinfo_min_freq,
                                        cpuinfo_max_freq, scaling_cur_freq, scaling_governor,
                                        scaling_setspeed (all in kHz), and optionally
                                        scaling_available_governors
    class/thermal/thermal_zoneN/temp    in m°C

Decisions:
- A tree is *simulated* when its root, with symlinks resolved, is not `/sys`
  (so `/sys/` and `/sys/../sys` are the real tree). On a simulated tree the
  actuator also plays the driver: after writing scaling_setspeed it writes the
  same value to scaling_cur_freq, so the policy's `cur` follows its requests. On
  the real tree scaling_cur_freq is read-only and luabpf never writes it
  (`SysfsTree.simulate_cur` refuses).
- Only `cpuN` directories that hold a `cpufreq` directory are CPUs; the shared
  `devices/system/cpu/cpufreq/` (policyN) directory is not.
- `available()` falls back to `[cpuinfo_min_freq, cpuinfo_max_freq]` when
  scaling_available_frequencies is missing or empty: drivers such as intel_pstate
  and amd-pstate have no frequency table.
- Limits are cpuinfo_min_freq / cpuinfo_max_freq (the hardware's); the kernel itself
  further clamps scaling_setspeed to scaling_min_freq / scaling_max_freq. The
  actuator reads each CPU's frequencies and limits once, on first use.
- `resolve` first keeps the available frequencies inside the limits, so its answer
  is always a frequency the CPU offers within its limits; only if none is inside
  (an inconsistent tree) does it clamp the chosen frequency into the limits.
- The thermal zone of CPU N is `thermal_zoneN` if it exists, else `thermal_zone0`
  (on real hardware zone numbers are the platform's, so most CPUs read zone 0);
  `temp_c` is None when there is no zone, or when the zone's temp cannot be read
  (some sensors answer EAGAIN/ENODATA while asleep); m°C become °C rounded down.
- Rate limiting, per CPU: a request is written only when its resolved frequency
  differs from the last one written AND `min_gap_s` has passed since that CPU's
  last write. Otherwise the decision is `skipped`: reason "unchanged" (and any
  pending request is dropped: the latest request is already in force) or "rate
  limited" (the request becomes the CPU's *pending* one, replacing an older one).
  The latest pending request is never lost: the CPU's next `apply` supersedes it,
  and `flush()` writes every pending request whose gap has passed — the run loop
  calls it once per interval.
- `--dry-run` goes through the same decisions (rate limiting included, as if each
  decision had been written) but writes nothing — neither governors nor speeds; its
  decisions say reason "dry run" with `written` False.
- `Actuator.stop()` restores every governor it changed, tries them all even if one
  fails (then raises the first failure), forgets them (so a second call does
  nothing) and is what a failed `start()` calls before re-raising. As a context
  manager, the actuator starts on entry and stops on exit, exception or not.
"""
from __future__ import annotations

import errno
import os
import re
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

__all__ = ["CpufreqError", "SysfsTree", "resolve", "Decision", "Actuator", "make_simulated",
           "RELATIONS", "USERSPACE", "DEFAULT_FREQS"]

RELATIONS = ("<=", ">=")
USERSPACE = "userspace"
DEFAULT_FREQS = (800000, 1200000, 1600000, 2000000, 2400000)
DEFAULT_GOVERNORS = ("performance", "powersave", "userspace", "schedutil")
_CPU_DIR = re.compile(r"^cpu(\d+)$")
_EPSILON_S = 1e-9       # float rounding of clock readings, so a gap of exactly min_gap_s counts


class CpufreqError(Exception):
    """cpufreq's sysfs cannot be read or written as needed; str() is one sentence
    naming the path."""


# ---- file access -----------------------------------------------------------------------

def _failure(path: str, e: OSError, value: str | None = None) -> CpufreqError:
    if isinstance(e, PermissionError):
        return CpufreqError(f"{path}: permission denied; changing cpufreq settings needs "
                            "root (run it with sudo)")
    if isinstance(e, FileNotFoundError):
        return CpufreqError(f"{path} does not exist")
    if value is not None and e.errno == errno.EINVAL:
        return CpufreqError(f"{path}: the kernel refused the value {value!r}")
    return CpufreqError(f"{path}: {e.strerror or e}")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        raise _failure(path, e) from None


def _read_int(path: str) -> int:
    text = _read(path)
    try:
        return int(text)
    except ValueError:
        raise CpufreqError(f"{path}: expected a whole number, found {text[:40]!r}") from None


def _write(path: str, value: str, atomic: bool = False) -> None:
    """Write without creating: a missing file is an error, as it is in sysfs. `atomic`
    (what luabpf writes as the simulated driver, scaling_cur_freq: a plain file others
    read meanwhile): write a sibling and rename it over the file, so a reader never sees
    it empty, as a sysfs file is never seen empty."""
    if atomic:
        if not os.path.isfile(path):
            raise _failure(path, FileNotFoundError(2, "No such file or directory"), value)
        tmp = f"{path}.luabpf-{os.getpid()}"
        try:
            with open(tmp, "w") as f:
                f.write(value + "\n")
            os.replace(tmp, path)
        except OSError as e:
            raise _failure(path, e, value) from None
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except OSError as e:
        raise _failure(path, e, value) from None
    try:
        os.write(fd, (value + "\n").encode())
    except OSError as e:
        raise _failure(path, e, value) from None
    finally:
        os.close(fd)


# ---- the tree --------------------------------------------------------------------------

class SysfsTree:
    """A /sys-shaped tree (the real /sys by default). Frequencies are in kHz."""

    def __init__(self, root: str = "/sys"):
        self.root = root
        self.cpu_root = os.path.join(root, "devices", "system", "cpu")
        if not os.path.isdir(self.cpu_root):
            raise CpufreqError(f"{self.cpu_root} does not exist, so {root} is not a "
                               "sysfs tree with CPUs")

    def __repr__(self) -> str:
        return f"SysfsTree({self.root!r})"

    @property
    def simulated(self) -> bool:
        """True unless the root, symlinks resolved, is /sys."""
        return os.path.realpath(self.root) != "/sys"

    def cpus(self) -> list[int]:
        """The CPUs that have a cpufreq directory, in order."""
        found = []
        for name in os.listdir(self.cpu_root):
            m = _CPU_DIR.match(name)
            if m and os.path.isdir(os.path.join(self.cpu_root, name, "cpufreq")):
                found.append(int(m.group(1)))
        return sorted(found)

    def cpufreq_dir(self, cpu: int) -> str:
        path = os.path.join(self.cpu_root, f"cpu{cpu}", "cpufreq")
        if not os.path.isdir(path):
            raise CpufreqError(f"CPU {cpu} has no cpufreq directory {path}")
        return path

    def _file(self, cpu: int, name: str) -> str:
        return os.path.join(self.cpufreq_dir(cpu), name)

    def available(self, cpu: int) -> list[int]:
        """The CPU's frequencies, sorted; `[cpuinfo_min_freq, cpuinfo_max_freq]` when
        scaling_available_frequencies is missing or empty (intel_pstate, amd-pstate)."""
        path = self._file(cpu, "scaling_available_frequencies")
        if not os.path.exists(path):
            return sorted(set(self.limits(cpu)))
        text = _read(path)
        try:
            freqs = sorted({int(word) for word in text.split()})
        except ValueError:
            raise CpufreqError(f"{path}: expected frequencies in kHz, found "
                               f"{text[:40]!r}") from None
        return freqs or sorted(set(self.limits(cpu)))

    def limits(self, cpu: int) -> tuple[int, int]:
        """(cpuinfo_min_freq, cpuinfo_max_freq)."""
        lo = _read_int(self._file(cpu, "cpuinfo_min_freq"))
        hi_path = self._file(cpu, "cpuinfo_max_freq")
        hi = _read_int(hi_path)
        if lo > hi:
            raise CpufreqError(f"{hi_path}: the maximum {hi} is below the minimum {lo}")
        return lo, hi

    def cur(self, cpu: int) -> int:
        return _read_int(self._file(cpu, "scaling_cur_freq"))

    def governor(self, cpu: int) -> str:
        return _read(self._file(cpu, "scaling_governor"))

    def governors(self, cpu: int) -> list[str] | None:
        """The names in scaling_available_governors; None when the file is missing."""
        path = self._file(cpu, "scaling_available_governors")
        return _read(path).split() if os.path.exists(path) else None

    def set_governor(self, cpu: int, name: str) -> None:
        path = self._file(cpu, "scaling_governor")
        offered = self.governors(cpu)
        if offered is not None and name not in offered:
            raise CpufreqError(f"{path}: governor {name!r} is not available (the CPU offers "
                               f"{', '.join(offered) or 'none'})")
        _write(path, name)

    def set_speed(self, cpu: int, khz: int) -> None:
        _write(self._file(cpu, "scaling_setspeed"), str(int(khz)))

    def simulate_cur(self, cpu: int, khz: int) -> None:
        """Play the driver: write scaling_cur_freq. Only on a simulated tree."""
        path = self._file(cpu, "scaling_cur_freq")
        if not self.simulated:
            raise CpufreqError(f"{path} is the kernel's read-only report and luabpf "
                               "never writes it")
        _write(path, str(int(khz)), atomic=True)

    def thermal_zone(self, cpu: int) -> str | None:
        """The zone directory for the CPU: thermal_zone{cpu}, else thermal_zone0, else None."""
        base = os.path.join(self.root, "class", "thermal")
        for zone in (f"thermal_zone{cpu}", "thermal_zone0"):
            path = os.path.join(base, zone)
            if os.path.isdir(path):
                return path
        return None

    def temp_c(self, cpu: int) -> int | None:
        """The CPU's temperature in °C, rounded down; None without a readable zone."""
        zone = self.thermal_zone(cpu)
        if zone is None:
            return None
        path = os.path.join(zone, "temp")
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            return None
        try:
            return int(text) // 1000
        except ValueError:
            raise CpufreqError(f"{path}: expected a temperature in m°C, found "
                               f"{text[:40]!r}") from None


def make_simulated(dir: str, cpus: int | Iterable[int] = 2, freqs: Sequence[int] = DEFAULT_FREQS,
                   governor: str = "schedutil", temps: Sequence[float] | None = None, *,
                   governors: Sequence[str] | None = DEFAULT_GOVERNORS) -> SysfsTree:
    """Create a simulated tree under `dir` and return it.

    `cpus` is a count (CPUs 0..n-1) or the CPU numbers. Every CPU offers `freqs`
    (kHz; limits are their min and max) and starts at the highest with `governor`,
    whose scaling_setspeed reads "<unsupported>" as the kernel's does. `temps` are in
    °C, one thermal_zoneN each (written in m°C); None gives one zone per CPU number
    at 40 °C, [] gives none. `governors` is scaling_available_governors (the current
    governor is added to it); None leaves the file out.
    """
    if os.path.realpath(dir) == "/sys":
        raise ValueError("make_simulated writes a fake tree; it refuses to write into /sys")
    ids = list(range(cpus)) if isinstance(cpus, int) else sorted(set(cpus))
    freqs = sorted(set(int(f) for f in freqs))
    if not freqs or freqs[0] <= 0:
        raise ValueError("a simulated CPU needs at least one positive frequency")
    files = {
        "scaling_available_frequencies": " ".join(map(str, freqs)) + " ",
        "cpuinfo_min_freq": freqs[0], "cpuinfo_max_freq": freqs[-1],
        "scaling_min_freq": freqs[0], "scaling_max_freq": freqs[-1],
        "scaling_cur_freq": freqs[-1], "scaling_governor": governor,
        "scaling_setspeed": "<unsupported>", "scaling_driver": "luabpf-simulated",
    }
    if governors is not None:
        offered = list(governors) + ([governor] if governor not in governors else [])
        files["scaling_available_governors"] = " ".join(offered) + " "
    os.makedirs(os.path.join(dir, "devices", "system", "cpu"), exist_ok=True)
    for cpu in ids:
        d = os.path.join(dir, "devices", "system", "cpu", f"cpu{cpu}", "cpufreq")
        os.makedirs(d, exist_ok=True)
        for name, value in files.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(f"{value}\n")
    zones = [40.0] * (max(ids) + 1 if ids else 0) if temps is None else list(temps)
    for n, t in enumerate(zones):
        d = os.path.join(dir, "class", "thermal", f"thermal_zone{n}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "temp"), "w") as f:
            f.write(f"{round(t * 1000)}\n")
        with open(os.path.join(d, "type"), "w") as f:
            f.write("luabpf-simulated\n")
    return SysfsTree(dir)


# ---- resolution ------------------------------------------------------------------------

def resolve(freq: int, relation: str, available: Sequence[int], limits: tuple[int, int]) -> int:
    """The frequency `cpufreq.target(cpu, freq, relation)` asks for.

    '<=': the highest available at or below `freq` (the lowest if none is);
    '>=': the lowest available at or above `freq` (the highest if none is);
    chosen among the available frequencies inside `limits` = (min, max), and clamped
    into them when none is inside.
    """
    if relation not in RELATIONS:
        raise ValueError(f"relation must be '<=' or '>=', not {relation!r}")
    lo, hi = limits
    if lo > hi:
        raise ValueError(f"limits ({lo}, {hi}) have the minimum above the maximum")
    if not available:
        raise ValueError("there are no available frequencies to choose from")
    inside = sorted(f for f in set(available) if lo <= f <= hi)
    choices = inside or sorted(set(available))
    if relation == "<=":
        below = [f for f in choices if f <= freq]
        chosen = below[-1] if below else choices[0]
    else:
        above = [f for f in choices if f >= freq]
        chosen = above[0] if above else choices[-1]
    return min(max(chosen, lo), hi)


# ---- the actuator ----------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """What became of one request: `written` says whether scaling_setspeed was
    written; otherwise `reason` is "unchanged", "rate limited" or "dry run"."""
    cpu: int
    requested: int
    relation: str
    resolved: int
    written: bool
    reason: str | None = None

    def as_json(self) -> dict:
        return asdict(self)


class Actuator:
    """Applies requests to one tree; see the module's decisions for the rules."""

    def __init__(self, tree: SysfsTree, *, dry_run: bool = False, min_gap_s: float = 0.02,
                 clock: Callable[[], float] = time.monotonic):
        self.tree = tree
        self.dry_run = dry_run
        self.min_gap_s = min_gap_s
        self.clock = clock
        self._saved: dict[int, str] = {}            # governors to restore
        self._freqs: dict[int, tuple[list[int], tuple[int, int]]] = {}
        self._last: dict[int, tuple[int, float]] = {}   # cpu -> (khz, time) of last write
        self._pending: dict[int, tuple[int, str]] = {}  # cpu -> (requested, relation)

    # -- governors

    def start(self) -> "Actuator":
        """Switch every CPU to the userspace governor, remembering the previous one."""
        cpus = self.tree.cpus()
        if not cpus:
            raise CpufreqError(f"no CPU under {self.tree.cpu_root} has a cpufreq directory "
                               "(use --sysfs-root with a simulated tree on machines without "
                               "a cpufreq driver)")
        if self.dry_run:
            return self
        try:
            for cpu in cpus:
                previous = self.tree.governor(cpu)
                if previous != USERSPACE:
                    self.tree.set_governor(cpu, USERSPACE)
                    self._saved[cpu] = previous
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Restore the governors `start` changed; a second call does nothing."""
        saved, self._saved = self._saved, {}
        first: CpufreqError | None = None
        for cpu, name in saved.items():
            try:
                self.tree.set_governor(cpu, name)
            except CpufreqError as e:
                first = first or e
        if first is not None:
            raise first

    def __enter__(self) -> "Actuator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def changed_governors(self) -> dict[int, str]:
        """CPU -> the governor `stop` will restore."""
        return dict(self._saved)

    # -- requests

    def _table(self, cpu: int) -> tuple[list[int], tuple[int, int]]:
        if cpu not in self._freqs:
            self._freqs[cpu] = (self.tree.available(cpu), self.tree.limits(cpu))
        return self._freqs[cpu]

    def apply(self, cpu: int, freq: int, relation: str) -> Decision:
        """Resolve one request and write it unless it is unchanged or too soon."""
        available, limits = self._table(cpu)
        khz = resolve(freq, relation, available, limits)
        now = self.clock()
        last = self._last.get(cpu)
        if last is not None and last[0] == khz:
            self._pending.pop(cpu, None)
            return Decision(cpu, freq, relation, khz, False, "unchanged")
        if last is not None and not self._gap_passed(cpu, now):
            self._pending[cpu] = (freq, relation)
            return Decision(cpu, freq, relation, khz, False, "rate limited")
        self._pending.pop(cpu, None)
        self._last[cpu] = (khz, now)
        if self.dry_run:
            return Decision(cpu, freq, relation, khz, False, "dry run")
        self.tree.set_speed(cpu, khz)
        if self.tree.simulated:
            self.tree.simulate_cur(cpu, khz)
        return Decision(cpu, freq, relation, khz, True)

    def _gap_passed(self, cpu: int, now: float) -> bool:
        return now - self._last[cpu][1] >= self.min_gap_s - _EPSILON_S

    def pending(self) -> dict[int, tuple[int, str]]:
        """CPU -> (requested, relation) of its latest rate-limited request."""
        return dict(self._pending)

    def flush(self) -> list[Decision]:
        """Apply every pending request whose CPU's gap has passed; the rest stay pending."""
        now = self.clock()
        done = []
        for cpu, (freq, relation) in sorted(self._pending.items()):
            if self._gap_passed(cpu, now):
                done.append(self.apply(cpu, freq, relation))
        return done
