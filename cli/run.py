"""`luabpf run`: attach a program and live with it.

Owns what the command does and prints (docs/running.md, "`luabpf run`"); `app` registers it.

`run FILE --xdp DEV | --tc DEV[:ingress|:egress] | --cpufreq` attaches the program
(a BPF link, so it dies with the process): a filter to the device's hook; a
CPU-frequency policy to a per-CPU timer (with its sched_switch companion), its
requests applied by the actuator each interval (`runtime/policy.py`); a script of
`tracepoint.CATEGORY.EVENT` functions, with no flag, to those tracepoints. It pins it
and its maps under
/sys/fs/bpf/luabpf/NAME/ (`runtime/pins.py`; NAME from `--name`, else the file's
name) and turns on the kernel's run-time statistics. A live view, 4 times a second,
shows how often the program ran and its mean run time, how often it returned each
verdict, the busiest entries of each
map, the globals, the latest print events and the runtime errors and drops. With
`--json` it prints one JSON object per line instead: "attached", every print event
as it comes, "stats" each second, "detached". It detaches and unpins on Ctrl-C,
SIGTERM or SIGHUP, after `--duration S`, or when the device goes away; a SIGKILL
detaches too (the link dies with the process) and the next `run` removes the pins.

`--map NAME=@FILE` fills a map from a map file (runtime/mapdata.py reads and checks it
against the map's types after compiling, before anything is loaded) once the program is
loaded and before it is attached.

`luabpf set` and `luabpf ls`, which work on what `run` pinned, are `pins`'s; `luabpf map`
is `maps`'s.

Exit codes: 0; 1 when the program failed to compile, verify or attach, raised
runtime errors while running, a --map file is wrong or names no map of the script;
2 for malformed arguments (a --map file that cannot be read too).
"""
from __future__ import annotations

import collections
import math
import os
import signal
import time

from luabpf import api
from luabpf.cli.common import (EXIT_ERROR, EXIT_OK, UsageError, add_cost_flags, emit_json, err,
                               lua_repr, out, read_source)
from luabpf.compiler.program import script_manifest
from luabpf.runtime import kernel, pins
from luabpf.runtime.mapdata import MapDataError, MapTypes, read_map_file
from luabpf.runtime.errors import run_problem
from luabpf.runtime.hooks import RUNTIME_HOOKS, Attached, BadPlace, Place, detach

REFRESH_HZ = 4
TOP_ENTRIES = 5              # map entries shown per map
RECENT_EVENTS = 8            # print events kept in the live view
MAPS_EVERY = 1.0             # seconds between reads of the maps' busiest entries


def add_commands(sub) -> None:
    r = sub.add_parser("run", help="attach a program, pin it, show live counters, maps and events")
    r.add_argument("file", metavar="FILE.lua")
    where = r.add_mutually_exclusive_group()
    where.add_argument("--xdp", metavar="DEV", help="attach filter() to DEV's XDP hook")
    where.add_argument("--tc", metavar="DEV[:DIR]",
                       help="attach filter() to DEV's tc hook, ingress (default) or egress")
    where.add_argument("--cpufreq", action="store_true",
                       help="run throttle(cpu, cur, max, min) on every CPU each interval")
    r.add_argument("--netns", metavar="NAME", default=None,
                   help="the device is in network namespace NAME (as in `ip netns`)")
    r.add_argument("--interval", type=int, default=None, metavar="MS",
                   help="--cpufreq: how often the policy runs (default 20 ms)")
    r.add_argument("--sysfs-root", default=None, metavar="DIR",
                   help="--cpufreq: a /sys-shaped tree to read and write (a simulated one)")
    r.add_argument("--dry-run", action="store_true",
                   help="--cpufreq: show the policy's decisions, write nothing")
    r.add_argument("--name", default=None,
                   help="pin as /sys/fs/bpf/luabpf/NAME (default: the file's name without .lua)")
    r.add_argument("--duration", type=float, default=None, metavar="S",
                   help="detach and exit after S seconds")
    r.add_argument("--map", action="append", default=[], metavar="NAME=@FILE", dest="map_files",
                   help="fill the script's map NAME from a map file before attaching "
                        "(one entry a line: KEY VALUE, or KEY alone for 1); repeatable")
    add_cost_flags(r)
    r.add_argument("--json", action="store_true",
                   help="JSON lines: attached, each print event, stats each second, detached")
    r.set_defaults(run=cmd_run)


# ---- luabpf run ---------------------------------------------------------------------

class _Stop:
    """The reason to stop, set by signal handlers (so detaching is never cut short)."""

    def __init__(self):
        self.reason: str | None = None
        self._old = {}

    def install(self) -> None:
        names = {signal.SIGINT: "interrupted", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}
        for sig, name in names.items():
            self._old[sig] = signal.signal(sig, lambda *_a, _n=name: self._set(_n))

    def _set(self, reason: str) -> None:
        self.reason = self.reason or reason

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _check_flags(args) -> None:
    """Flags that do not belong to the chosen hook, or values that cannot work: usage errors."""
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration >= 0):
        raise UsageError("--duration is a number of seconds, 0 or more")
    policy_only = [f for f, v in (("--interval", args.interval), ("--sysfs-root", args.sysfs_root),
                                  ("--dry-run", args.dry_run)) if v not in (None, False)]
    if policy_only and not args.cpufreq:
        raise UsageError(f"{', '.join(policy_only)}: only with --cpufreq")
    args.map_files = [_map_flag(text) for text in args.map_files]
    names = [name for name, _ in args.map_files]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(f"--map {twice[0]}: given twice; one file fills a map")
    if args.netns is not None and not (args.xdp or args.tc):
        raise UsageError("--netns: only with --xdp or --tc (the device's namespace)")
    if args.cpufreq:
        args.interval = 20 if args.interval is None else args.interval
        args.sysfs_root = args.sysfs_root or "/sys"
        if not 1 <= args.interval <= 60_000:
            raise UsageError("--interval is in milliseconds, from 1 to 60000")


def _map_flag(text: str) -> tuple[str, str]:
    """--map NAME=@FILE: (NAME, FILE)."""
    name, eq, file = text.partition("=")
    if not eq or not name.strip() or not file.startswith("@") or len(file) == 1:
        raise UsageError(f"--map {text!r}: write NAME=@FILE (the map's name, then @ and the "
                         "path of a map file)")
    return name.strip(), file[1:]


def _read_map_files(args, prog) -> list[tuple[str, str, list]]:
    """(map, file, entries) of each --map, every file read and checked against its map
    before anything is loaded (MapDataError: an unknown map; MapFileError: a bad file)."""
    maps = script_manifest(prog.compiled_programs)["maps"]
    seeds = []
    for name, path in args.map_files:
        if name not in maps:
            known = ", ".join(sorted(maps)) or "none"
            raise MapDataError(f"--map {name}: {args.file} has no map '{name}' (its maps: "
                               f"{known})")
        seeds.append((name, path, read_map_file(path, MapTypes.of(name, maps[name]))))
    return seeds


def cmd_run(args) -> int:
    _check_flags(args)
    name = args.name or pins.default_name(args.file)
    if not pins.valid_name(name):
        raise UsageError(f"--name {name!r}: letters, digits, '_' and '-' only, at most 64")
    text = read_source(args.file)
    kind, prog = _compile(args, text)
    seeds = _read_map_files(args, prog)
    # before attaching: NAME's stale pins, and a killed policy's governors on this tree
    for run in pins.clean_stale(name, policies_on=args.sysfs_root if args.cpufreq else None):
        err.print(f"luabpf: removed the pins of {run.name} (pid {run.pid} is gone)",
                  markup=False)
    others = [r.name for r in pins.stale_runs()]
    if others:
        err.print(f"luabpf: stale pins of {', '.join(others)} remain (their runs are gone); "
                  "`luabpf ls --prune` removes them", markup=False)
    stop = _Stop()
    try:
        with prog.load() as loaded:
            stop.install()
            try:
                stats = kernel.enable_stats()
            except kernel.PermissionProblem as e:
                stats = None
                err.print(f"luabpf: run-time statistics are off: {e}", markup=False)
            except kernel.BpfError as e:
                stats = None
                err.print(f"luabpf: run-time statistics are off ({e.strerror})", markup=False)
            for map_name, path, entries in seeds:       # filled before anything runs
                loaded.maps[map_name].store_entries(entries, path)
                if not args.json:
                    err.print(f"luabpf: map {map_name}: {len(entries)} entr"
                              f"{'y' if len(entries) == 1 else 'ies'} from {path}", markup=False)
            session = _Session(kind)
            try:               # a failure (AttachError, PinError…) is cli.report's to show
                session.attach(args, loaded)
                with pins.pin_running(name, loaded, session.info()) as pinned:
                    return _watch(args, loaded, session, pinned.path, stop)
            finally:
                session.detach()
                if stats is not None:
                    stats.close()
    finally:
        stop.restore()


def _hook_of(args, text: str) -> str:
    """The hook the flags name; with none, tracepoint for a script of tracepoint functions."""
    for hook in RUNTIME_HOOKS.values():
        if hook.flag is not None and getattr(args, hook.flag[2:]):
            return hook.name
    tracepoints = [n for n, _ in api.entry_points(text, args.file) if n.startswith("tracepoint.")]
    if not tracepoints:
        raise UsageError("say where to run it: --xdp DEV or --tc DEV for filter(hdr, pld), "
                         "--cpufreq for throttle(cpu, cur, max, min); a script of "
                         "tracepoint.CATEGORY.EVENT functions needs no flag")
    return "tracepoint"


def _compile(args, text: str):
    """(hook, programs): what the flags and the script's entry points say to run."""
    hook = _hook_of(args, text)
    _require(hook, args.netns is not None)
    prog = api.compile(text, args.file, hook=hook, max_loop=args.max_loop,
                       loops="kernel", count_verdicts=True, budget=args.budget)
    return hook, prog


def _require(kind: str, netns: bool = False) -> None:
    """Name the capabilities loading and attaching need and this process lacks, before
    the kernel answers with something misleading (PermissionProblem, exit 1)."""
    hook = RUNTIME_HOOKS[kind]
    problem = run_problem(hook.doing, hook.prog_types, netns)
    if problem is not None:
        raise problem


class _Session:
    """What one `luabpf run` attached: links (a device's hook, timers, tracepoints) and, for
    a CPU-frequency policy, the actuator the loop ticks (runtime/hooks.py attaches them)."""

    def __init__(self, kind: str):
        self.hook = RUNTIME_HOOKS[kind]
        self.kind = kind
        self.attached = Attached()

    @property
    def links(self) -> list:
        return self.attached.links

    @property
    def policy(self):
        return self.attached.policy

    def attach(self, args, loaded) -> None:
        place = Place(device=args.xdp or args.tc, netns=args.netns, interval_ms=args.interval or 20,
                      sysfs_root=args.sysfs_root or "/sys", dry_run=args.dry_run)
        try:
            self.attached = self.hook.attach(loaded, place)
        except BadPlace as e:
            raise UsageError(str(e)) from None

    def tick(self) -> list:
        return self.policy.tick() if self.policy is not None else []

    @property
    def is_attached(self) -> bool:
        return any(link.attached for link in self.links)

    def describe(self) -> str:
        return "; ".join(link.describe() for link in self.links)

    def info(self) -> dict:
        """JSON-ready: a filter's link fields at the top (hook, dev, mode, prog_id, link_id…);
        every link under "links"; a policy's tree, and the governors to put back."""
        infos = [link.info() for link in self.links]
        flat = dict(infos[0]) if self.hook.device_report and infos else {"hook": self.kind}
        flat["links"] = infos
        if self.policy is not None:
            flat.update(sysfs_root=self.policy.tree.root, dry_run=self.policy.actuator.dry_run,
                        cpus=self.policy.cpus,
                        restore_governors={"root": self.policy.tree.root,
                                           "governors": self.policy.actuator.changed_governors})
        return flat

    def device_gone(self) -> bool:
        return any(_device_gone(link) for link in self.links)

    def detach(self) -> None:
        """Put the governors back, then detach every link (each step runs, whatever fails)."""
        detach(self.attached)


class _Sampler:
    """Samples a running program: statistics, maps, globals, errors; events as they come."""

    def __init__(self, loaded, session: _Session):
        self.loaded, self.session = loaded, session
        self.events = loaded.events()
        self.recent: collections.deque = collections.deque(maxlen=RECENT_EVENTS)
        self._maps_at: float | None = None
        self._maps_last: dict = {}
        self.first = self.last = self.sample()

    def sample(self, fresh: bool = False) -> dict:
        if fresh:
            self._maps_at = None
        runs = {}
        for compiled, fd in zip(self.loaded.programs, self.loaded.fds):
            info = kernel.prog_info(fd)
            runs[_short(compiled.hook.entry)] = (info["run_cnt"], info["run_time_ns"])
        policy = self.session.policy
        return {"runs": runs,
                "errors": self.loaded.describe_errors(), "device_gone": self.session.device_gone(),
                "verdicts": self.loaded.verdict_counts(),
                "maps": self._maps(),
                "globals": dict(self.loaded.globals),
                "cpus": _cpus(policy) if policy is not None else None}

    def _maps(self) -> dict:
        """The busiest entries of each map, read at most once a second (a full 65,536-entry
        map takes tens of milliseconds to read, even in batches)."""
        now = time.monotonic()
        if self._maps_at is None or now - self._maps_at >= MAPS_EVERY:
            self._maps_at = now
            self._maps_last = {name: view.busiest(TOP_ENTRIES)
                               for name, view in self.loaded.maps.items()}
        return self._maps_last

    def wait_events(self, timeout: float) -> list:
        if self.events is None:
            time.sleep(timeout)
            return []
        got = self.events.poll(timeout)
        self.recent.extend(got)
        return got

    def numbers(self, elapsed: float) -> dict:
        first, last = self.first, self.last
        programs = {}
        for entry, (cnt, ns) in last["runs"].items():
            cnt0, ns0 = first["runs"].get(entry, (0, 0))
            runs, spent = cnt - cnt0, ns - ns0
            programs[entry] = {"run_cnt": runs, "run_time_ns": spent,
                               "ns_per_run": round(spent / runs, 1) if runs else None,
                               "runs_per_s": round(runs / elapsed, 1) if elapsed > 0 else 0.0}
        main = next(iter(programs.values()))
        out = {"elapsed": round(elapsed, 3), **main,
               "verdicts": {k: v - first["verdicts"].get(k, 0) for k, v in last["verdicts"].items()},
               "maps": {name: [[k, v] for k, v in top] for name, top in last["maps"].items()},
               "globals": last["globals"], "errors": last["errors"]}
        if len(programs) > 1:
            out["programs"] = programs
        if last["cpus"] is not None:
            out["cpus"] = last["cpus"]
        return out


def _short(entry: str) -> str:
    """How a program is named in the view, as the kernel names it: the last part of its
    entry's name (filter, throttle, sched_switch)."""
    return entry.rsplit(".", 1)[-1]


def _cpus(policy) -> dict:
    loads, freqs = policy.loads(), policy.frequencies()
    return {str(cpu): {"cur_khz": freqs.get(cpu), "load": loads.get(cpu),
                       "temp_c": policy.tree.temp_c(cpu) if cpu in freqs else None}
            for cpu in policy.cpus}


def _device_gone(link) -> bool:
    fd = getattr(link, "link_fd", None)
    if fd is None:
        return False
    try:
        return kernel.link_info(fd).get("ifindex", 1) == 0
    except OSError:
        return True


def _watch(args, loaded, session: _Session, pin_path: str, stop: _Stop) -> int:
    start = time.monotonic()
    deadline = start + args.duration if args.duration is not None else None
    sampler = _Sampler(loaded, session)
    decisions: collections.deque = collections.deque(maxlen=RECENT_EVENTS)
    if args.json:
        emit_json({**session.info(), "event": "attached", "program": args.file, "pinned": pin_path,
               "pid": os.getpid()})
    else:
        err.print(f"luabpf: {args.file} attached: {session.describe()}; pinned at {pin_path}; "
                  "Ctrl-C detaches", markup=False)
    live = None if args.json else _live(_view(args.file, session, sampler, decisions, 0.0))
    step = 1.0 / REFRESH_HZ
    if session.policy is not None:
        step = min(step, args.interval / 1000)
    next_sample, next_json = start + 1.0 / REFRESH_HZ, start + 1.0
    try:
        while True:
            now = time.monotonic()
            if stop.reason is None and deadline is not None and now >= deadline:
                stop.reason = "duration"
            if stop.reason is None and sampler.last["device_gone"]:
                stop.reason = "device gone"
            if stop.reason:
                break
            wait = step if deadline is None else min(step, deadline - now)
            for event in sampler.wait_events(max(0.0, wait)):
                if args.json:
                    emit_json(event.as_json())
            for decision in session.tick():
                if decision.reason not in ("unchanged", "rate limited"):
                    decisions.append(decision)
                    if args.json:
                        emit_json({"event": "decision", **decision.as_json()})
            now = time.monotonic()
            if now < next_sample:
                continue
            next_sample = now + 1.0 / REFRESH_HZ
            sampler.last = sampler.sample()
            elapsed = now - start
            if live is not None:
                live.update(_view(args.file, session, sampler, decisions, elapsed))
            elif now >= next_json:
                next_json += 1.0
                emit_json({"event": "stats", **sampler.numbers(elapsed)})
    finally:
        if live is not None:
            live.stop()
    session.detach()
    for event in sampler.wait_events(0.0):       # what was printed before the detach
        if args.json:
            emit_json(event.as_json())
    sampler.last = sampler.sample(fresh=True)
    elapsed = time.monotonic() - start
    if args.json:
        emit_json({"event": "detached", "reason": stop.reason, **sampler.numbers(elapsed)})
    else:
        out.print(_view(args.file, session, sampler, decisions, elapsed))
        err.print(f"luabpf: detached ({stop.reason}) after {elapsed:.1f} s", markup=False)
    if stop.reason == "device gone":
        return EXIT_ERROR
    return EXIT_ERROR if sampler.last["errors"] and _fatal(loaded) else EXIT_OK


def _fatal(loaded) -> bool:
    """Whether any counted site is a runtime error (drops alone do not fail the run)."""
    sites = loaded.state.manifest["sites"]
    return any(sites[i]["fatal"] for i in loaded.error_counts())


def _live(view):
    from rich.live import Live      # rich: heavy, and only the live view needs it
    live = Live(view, console=out.real, refresh_per_second=REFRESH_HZ, transient=True,
                auto_refresh=True, redirect_stderr=False)
    live.start()
    return live


def _view(file: str, session: _Session, sampler: _Sampler, decisions, elapsed: float):
    from rich.table import Table    # rich: heavy, and only the live view needs it
    from rich.text import Text
    n = sampler.numbers(elapsed)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    ids = ", ".join(str(kernel_id) for kernel_id in _prog_ids(session))
    grid.add_row("program", Text(f"{file} (id {ids})"))
    grid.add_row("attached", Text(session.describe() if session.is_attached
                                  else f"{session.describe()}, detached"))
    grid.add_row("elapsed", f"{elapsed:.1f} s")
    for entry, p in (n.get("programs") or {"runs": n}).items():
        label = "runs" if entry == "runs" else f"{entry} runs"
        per = f", {p['ns_per_run']:.0f} ns per run" if p["ns_per_run"] is not None else ""
        grid.add_row(label, f"{p['run_cnt']:,} ({p['runs_per_s']:,.1f}/s){per}")
    if n["verdicts"]:
        grid.add_row("verdicts", Text("  ".join(f"{k} {v:,}" for k, v in
                                                sorted(n["verdicts"].items(), key=lambda kv: -kv[1]))))
    for cpu, c in (n.get("cpus") or {}).items():
        cur = f"{c['cur_khz'] / 1000:,.0f} MHz" if c["cur_khz"] is not None else "no cpufreq"
        temp = f", {c['temp_c']} °C" if c["temp_c"] is not None else ""
        grid.add_row(f"cpu {cpu}", Text(f"{cur}, load {c['load']}%{temp}"))
    if decisions:
        grid.add_row("decisions", Text("\n".join(_decision_text(d) for d in decisions)))
    for name, top in n["maps"].items():
        shown = "  ".join(f"{k}: {v:,}" for k, v in top) or "empty"
        grid.add_row(f"map {name}", Text(shown))
    if n["globals"]:
        grid.add_row("globals", Text("  ".join(f"{k} = {lua_repr(v)}" for k, v in n["globals"].items())))
    if sampler.recent:
        grid.add_row("events", Text("\n".join(e.render() for e in sampler.recent)))
    if n["errors"]:
        grid.add_row("errors", Text("\n".join(n["errors"]), style="red"))
    else:
        grid.add_row("errors", Text("none", style="green"))
    return grid


def _prog_ids(session: _Session) -> list:
    ids = []
    for link in session.links:
        pid = getattr(link, "prog_id", None)
        if pid is not None and pid not in ids:
            ids.append(pid)
    return ids


def _decision_text(d) -> str:
    how = "set" if d.written else (d.reason or "")
    return f"cpu {d.cpu}: {d.relation} {d.requested:,} kHz → {d.resolved:,} kHz ({how})"
