"""What luabpf has running, pinned under /sys/fs/bpf/luabpf/NAME/.

Owns the pinned layout of a running program and its life: `pin_running` (what
`luabpf run` calls once its program is attached), `list_running` (`luabpf ls`),
`open_running` (`luabpf set`, `luabpf map`, and any process that wants to read a running
program's maps, globals and error counts) and `clean_stale` (a run's own NAME, or
every stale run for `luabpf ls --prune`).

Layout of /sys/fs/bpf/luabpf/NAME/:
    progs/<entry>   each program (`filter`, `throttle`, `tracepoint:sched:sched_switch`)
    meta            an array map of one entry: the manifest and the run's owner, as JSON
    maps/<name>     each map: the script's own, luabpf_globals, luabpf_errors, luabpf_events

Decisions:
- NAME is the script's file name without `.lua` unless `luabpf run --name` says
  otherwise; a TARGET for `luabpf set` and `luabpf map` is that NAME or the path of
  such a directory.
- The attachment itself (a BPF link) is never pinned: it lives exactly as long as
  the `luabpf run` process, so a SIGKILL detaches the program. The pins outlive a
  SIGKILL; the owner recorded in `meta` (pid and start time, so a reused pid is not
  mistaken for it; a zombie counts as gone) tells a stale directory from a live one.
  `luabpf run NAME` removes NAME's stale pins only (another user's killed run keeps its
  pins, to be looked at, until `luabpf ls --prune`); a policy run also those of killed
  policies on its sysfs tree, first putting back the cpufreq governors they switched.
- `meta` is pinned first, so a run being set up is never taken for debris; a
  directory without `meta` is removed once it is DEBRIS_AGE seconds old.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import time
from dataclasses import dataclass

from luabpf.compiler.bpf.uapi import MapType
from luabpf.runtime import features, kernel
from luabpf.runtime.cpufreq import CpufreqError, SysfsTree
from luabpf.runtime.state import ProgramState, StateViews

ROOT_NAME = "luabpf"


class PinError(Exception):
    """A running program cannot be pinned or found; str() is one sentence for the user."""


def root() -> str:
    try:
        return os.path.join(features.ensure_bpffs(), ROOT_NAME)
    except OSError as e:
        raise PinError(f"{e.strerror or e}; luabpf keeps running programs in the BPF file "
                       "system (run it as root)") from None


def _denied(path: str) -> PinError:
    return PinError(f"{path}: permission denied; what luabpf runs belongs to root "
                    "(run it with sudo)")


@dataclass
class Running:
    """One directory under the root: who owns it and what it runs."""
    name: str
    path: str
    meta: dict

    @property
    def pid(self) -> int:
        return self.meta["owner"]["pid"]

    @property
    def alive(self) -> bool:
        owner = self.meta["owner"]
        return _start_time(owner["pid"]) == owner["start_time"]

    def as_json(self) -> dict:
        m = self.meta
        return {"name": self.name, "path": self.path, "pid": self.pid, "alive": self.alive,
                "file": m["manifest"]["file"], "hook": m["manifest"]["hook"],
                "attach": m.get("attach"), "prog_ids": m.get("prog_ids"),
                "started": m["owner"]["started"], "maps": sorted(m["manifest"]["maps"]),
                "globals": sorted(m["manifest"]["globals"])}


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat);
    None when there is no such process, or only its corpse (a zombie: killed, not reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def valid_name(name: str) -> bool:
    """bpffs refuses a '.' anywhere in a name (it keeps them for itself)."""
    return bool(name) and len(name) <= 64 and all(c.isalnum() or c in "_-" for c in name)


def default_name(file: str) -> str:
    base = os.path.basename(file)
    stem = base[:-4] if base.endswith(".lua") else base
    clean = "".join(c if c.isalnum() or c in "_-" else "_" for c in stem)
    return clean[:64] or "script"


def pin_name(entry: str) -> str:
    """A program's pin: its entry function, with ':' for the dots bpffs refuses
    (tracepoint:sched:sched_switch)."""
    return entry.replace(".", ":")


# ---- pinning ---------------------------------------------------------------------------

class PinnedRun:
    """The pins of one run; `remove()` (or leaving `with`) takes them away."""

    def __init__(self, path: str):
        self.path = path

    def remove(self) -> None:
        _remove_dir(self.path)

    def __enter__(self) -> "PinnedRun":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def pin_running(name: str, loaded, attach_info: dict | None) -> PinnedRun:
    """Pin `loaded` (a runtime.load.LoadedScript: its programs) and its maps as NAME."""
    if not valid_name(name):
        raise PinError(f"{name!r} is not a usable name (letters, digits, '_' and '-'; "
                       "at most 64)")
    clean_stale(name)
    base = root()
    os.makedirs(base, mode=0o700, exist_ok=True)
    path = os.path.join(base, name)
    existing = _read(path)
    if existing is not None and existing.alive:
        raise PinError(f"{name} is already running (pid {existing.pid}); give this run "
                       "another --name")
    _remove_dir(path)
    os.mkdir(path, mode=0o700)
    try:
        # meta first: from now on another run's clean_stale sees a live owner, not debris
        meta = {"manifest": loaded.manifest(), "attach": attach_info,
                "prog_ids": [kernel.prog_info(fd)["id"] for fd in loaded.fds],
                "owner": {"pid": os.getpid(), "start_time": _start_time(os.getpid()),
                          "started": time.time()}}
        _pin_meta(os.path.join(path, "meta"), meta)
        os.mkdir(os.path.join(path, "maps"), mode=0o700)
        os.mkdir(os.path.join(path, "progs"), mode=0o700)
        for compiled, fd in zip(loaded.programs, loaded.fds):
            kernel.obj_pin(fd, os.path.join(path, "progs", pin_name(compiled.hook.entry)))
        for map_name, fd in loaded.map_fds.items():
            kernel.obj_pin(fd, os.path.join(path, "maps", map_name))
    except BaseException:
        _remove_dir(path)
        raise
    return PinnedRun(path)


def _pin_meta(path: str, meta: dict) -> None:
    data = json.dumps(meta).encode()
    size = (len(data) + 4 + 7) // 8 * 8
    value = struct.pack("<I", len(data)) + data
    with kernel.map_create(MapType.ARRAY, 4, size, 1, name="luabpf_meta") as fd:
        kernel.map_update(fd, struct.pack("<I", 0), value.ljust(size, b"\0"))
        kernel.obj_pin(fd, path)


def _read_meta(path: str) -> dict:
    with kernel.obj_get(path) as fd:
        size = kernel.map_info(fd)["value_size"]
        raw = kernel.map_lookup(fd, struct.pack("<I", 0), size)
    n = struct.unpack_from("<I", raw)[0]
    return json.loads(raw[4:4 + n])


def _read(path: str) -> Running | None:
    """The run pinned at `path`, None when there is none (or only debris of one); PinError
    when this process may not look."""
    meta_path = os.path.join(path, "meta")
    try:
        meta = _read_meta(meta_path)
    except PermissionError:
        raise _denied(path) from None
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            raise _denied(path) from None
        return None
    except (ValueError, KeyError, struct.error):
        return None
    return Running(os.path.basename(path), path, meta)


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except PermissionError:
        raise _denied(path) from None


def _remove_dir(path: str) -> None:
    """Unpin everything under `path` (bpffs removes a pin like a file)."""
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)


# ---- listing, cleaning, opening --------------------------------------------------------

def list_running() -> list[Running]:
    """Every run pinned under the root, live or stale, by name."""
    base = root()
    if not os.path.isdir(base):
        return []
    found = []
    for name in _listdir(base):
        run = _read(os.path.join(base, name))
        if run is not None:
            found.append(run)
    return found


DEBRIS_AGE = 30.0        # seconds: a directory without meta younger than this is being made


def clean_stale(name: str | None = None, *, policies_on: str | None = None) -> list[Running]:
    """Remove the pins of runs whose process is gone, putting back what they changed (a
    policy's cpufreq governors), and debris without a meta; the stale runs removed.
    With `name`, only that NAME's (what `luabpf run --name NAME` does before it starts):
    other users' stale pins are theirs to look at until `luabpf ls --prune`. With
    `policies_on` (a sysfs root), also the stale policy runs on that tree, whose CPUs a
    new policy takes over. Without either, every stale run (`luabpf ls --prune`)."""
    base = root()
    if not os.path.isdir(base):
        return []
    removed = []
    names = _listdir(base) if name is None or policies_on is not None else [name]
    runs = [(n, _read(os.path.join(base, n))) for n in names if os.path.isdir(os.path.join(base, n))]
    for entry, run in runs:
        path = os.path.join(base, entry)
        if run is None:
            if name is not None and entry != name:
                continue
            try:
                young = time.time() - os.stat(path).st_mtime < DEBRIS_AGE
            except OSError:
                continue
            if not young:
                _remove_dir(path)
            continue
        if run.alive:
            continue
        mine = name is None and policies_on is None or entry == name or (
            policies_on is not None and _same_tree(_policy_root(run), policies_on))
        if not mine:
            continue
        if _policy_root(run) is not None and not _live_policy_on(_policy_root(run)):
            _restore_governors((run.meta.get("attach") or {}).get("restore_governors"))
        _remove_dir(path)
        removed.append(run)
    return removed


def _same_tree(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and os.path.realpath(a) == os.path.realpath(b)


def _live_policy_on(tree: str) -> bool:
    """Whether a live policy run drives this sysfs tree (its governors are its own now)."""
    return any(r.alive and _same_tree(_policy_root(r), tree) for r in list_running())


def stale_runs() -> list[Running]:
    """The runs whose process is gone and whose pins are still there."""
    return [r for r in list_running() if not r.alive]


def _policy_root(run: Running) -> str | None:
    """The sysfs tree a policy run drives (None for other runs)."""
    saved = (run.meta.get("attach") or {}).get("restore_governors") or {}
    return saved.get("root")


def _restore_governors(saved: dict | None) -> None:
    """Put back the governors a killed policy run had switched to userspace (where they
    still are on userspace: someone may have set them since)."""
    if not saved:
        return
    try:
        tree = SysfsTree(saved["root"])
        for cpu, governor in saved["governors"].items():
            if tree.governor(int(cpu)) == "userspace":
                tree.set_governor(int(cpu), governor)
    except (CpufreqError, OSError, KeyError, ValueError):
        pass


def resolve(target: str) -> str:
    """The pin directory TARGET names: a NAME under the root, or a directory path."""
    if os.sep in target:
        path = target
    else:
        if not valid_name(target):
            raise PinError(f"{target!r} is not the name of a running program")
        path = os.path.join(root(), target)
    if not os.path.isdir(path):
        names = [r.name for r in list_running() if r.alive]
        known = f" (running: {', '.join(names)})" if names else " (nothing is running)"
        raise PinError(f"no running luabpf program {target!r}{known}")
    return path


class OpenedRun(StateViews):
    """A running program opened from its pins: `.state` (maps, globals, error counts),
    `.running`; closes its fds on close() or leaving `with`."""

    def __init__(self, path: str):
        self.running = _read(path)
        if self.running is None:
            raise PinError(f"{path} holds no luabpf program")
        self._fds = {}
        try:
            maps_dir = os.path.join(path, "maps")
            for map_name in _listdir(maps_dir):
                self._fds[map_name] = kernel.obj_get(os.path.join(maps_dir, map_name))
        except BaseException:
            self.close()
            raise
        self.state = ProgramState(self._fds, self.running.meta["manifest"])

    def close(self) -> None:
        if getattr(self, "state", None) is not None:
            self.state.close()
        for fd in self._fds.values():
            fd.close()
        self._fds = {}

    def __enter__(self) -> "OpenedRun":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_running(target: str) -> OpenedRun:
    run = OpenedRun(resolve(target))
    if not run.running.alive:
        run.close()
        raise PinError(f"{target}: its luabpf run (pid {run.running.pid}) is gone; the next "
                       "`luabpf run` removes what it left")
    return run
