"""`luabpf run`, `luabpf set` and `luabpf ls`: living with a running program.

Owns what these commands do and print (DESIGN §4); `cli.py` registers them.

`run FILE --xdp DEV | --tc DEV[:ingress|:egress]` attaches the program (a BPF link,
so it dies with the process), pins it and its maps under
/sys/fs/bpf/luabpf/NAME/ (`runtime/pins.py`; NAME from `--name`, else the file's
name) and turns on the kernel's run-time statistics. A live view, 4 times a second,
shows how often the program ran and its mean run time, how often it returned each
verdict, the busiest entries of each
map, the globals, the latest print events and the runtime errors and drops. With
`--json` it prints one JSON object per line instead: "attached", every print event
as it comes, "stats" each second, "detached". It detaches and unpins on Ctrl-C,
SIGTERM or SIGHUP, after `--duration S`, or when the device goes away; a SIGKILL
detaches too (the link dies with the process) and the next `run` removes the pins.

`set TARGET NAME=VALUE…` changes globals of a running program (TARGET: its NAME or
its pin directory). `ls` lists what luabpf has running (and stale pins of runs
that were killed).

Exit codes: 0; 1 when the program failed to compile, verify or attach, raised
runtime errors while running, or `set` named an unknown program, global or a
value of the wrong type; 2 for malformed arguments.
"""
from __future__ import annotations

import collections
import json
import os
import signal
import time

from luabpf.cli import EXIT_ERROR, EXIT_OK, UsageError, err, lua_repr, out, read_source

REFRESH_HZ = 4
TOP_ENTRIES = 5              # map entries shown per map
RECENT_EVENTS = 8            # print events kept in the live view


def add_commands(sub, usage_here) -> None:
    r = sub.add_parser("run", help="attach a program, pin it, show live counters, maps and events")
    r.add_argument("file", metavar="FILE.lua")
    where = r.add_mutually_exclusive_group(required=True)
    where.add_argument("--xdp", metavar="DEV", help="attach to DEV's XDP hook")
    where.add_argument("--tc", metavar="DEV[:DIR]",
                       help="attach to DEV's tc hook, ingress (default) or egress")
    r.add_argument("--netns", metavar="NAME", default=None,
                   help="the device is in network namespace NAME (as in `ip netns`)")
    r.add_argument("--name", default=None,
                   help="pin as /sys/fs/bpf/luabpf/NAME (default: the file's name without .lua)")
    r.add_argument("--duration", type=float, default=None, metavar="S",
                   help="detach and exit after S seconds")
    r.add_argument("--max-loop", type=int, default=None, metavar="N")
    r.add_argument("--json", action="store_true",
                   help="JSON lines: attached, each print event, stats each second, detached")
    r.set_defaults(run=usage_here(cmd_run))

    s = sub.add_parser("set", help="change globals of a running program: luabpf set TARGET NAME=VALUE…")
    s.add_argument("target", metavar="TARGET", help="the run's NAME (see `luabpf ls`) or pin directory")
    s.add_argument("assignments", nargs="+", metavar="NAME=VALUE")
    s.set_defaults(run=usage_here(cmd_set))

    ls = sub.add_parser("ls", help="what luabpf has running")
    ls.add_argument("--json", action="store_true", help="one JSON object per run")
    ls.set_defaults(run=usage_here(cmd_ls))


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


def cmd_run(args) -> int:
    import luabpf
    from luabpf.runtime import kernel, pins
    from luabpf.runtime.attach import AttachError, attach, parse_target
    hook = "xdp" if args.xdp else "tc"
    try:
        target = parse_target(hook, args.xdp or args.tc)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.duration is not None and args.duration < 0:
        raise UsageError("--duration must not be negative")
    name = args.name or pins.default_name(args.file)
    if not pins.valid_name(name):
        raise UsageError(f"--name {name!r}: letters, digits, '_', '-' and '.' only, at most 64")
    prog = luabpf.compile(read_source(args.file), args.file, hook=hook, max_loop=args.max_loop,
                          count_verdicts=True)
    stop = _Stop()
    try:
        with prog.load() as loaded:
            stop.install()
            try:
                stats = kernel.enable_stats()
            except kernel.BpfError as e:
                stats = None
                err.print(f"luabpf: run-time statistics are off ({e.strerror})", markup=False)
            try:
                link = attach(loaded.fd, target, netns=args.netns)
            except AttachError as e:
                err.print(f"luabpf: {e}", markup=False)
                return EXIT_ERROR
            try:
                with pins.pin_running(name, loaded, link.info()) as pinned:
                    return _watch(args, loaded, link, pinned.path, stop)
            except pins.PinError as e:
                err.print(f"luabpf: {e}", markup=False)
                return EXIT_ERROR
            finally:
                link.detach()
                if stats is not None:
                    stats.close()
    finally:
        stop.restore()


class _Sampler:
    """Samples a running program: statistics, maps, globals, errors; events as they come."""

    def __init__(self, loaded, link):
        self.loaded, self.link = loaded, link
        self.events = loaded.events()
        self.recent: collections.deque = collections.deque(maxlen=RECENT_EVENTS)
        self.first = self.last = self.sample()

    def sample(self) -> dict:
        from luabpf.runtime import kernel
        info = kernel.prog_info(self.loaded.fd)
        return {"run_cnt": info["run_cnt"], "run_time_ns": info["run_time_ns"],
                "errors": self.loaded.describe_errors(), "device_gone": _device_gone(self.link),
                "verdicts": self.loaded.verdict_counts(),
                "maps": {name: view.busiest(TOP_ENTRIES) for name, view in self.loaded.maps.items()},
                "globals": dict(self.loaded.globals)}

    def wait_events(self, timeout: float) -> list:
        if self.events is None:
            time.sleep(timeout)
            return []
        got = self.events.poll(timeout)
        self.recent.extend(got)
        return got

    def numbers(self, elapsed: float) -> dict:
        first, last = self.first, self.last
        runs = last["run_cnt"] - first["run_cnt"]
        ns = last["run_time_ns"] - first["run_time_ns"]
        return {"elapsed": round(elapsed, 3), "run_cnt": runs, "run_time_ns": ns,
                "ns_per_run": round(ns / runs, 1) if runs else None,
                "runs_per_s": round(runs / elapsed, 1) if elapsed > 0 else 0.0,
                "verdicts": {k: v - first["verdicts"].get(k, 0) for k, v in last["verdicts"].items()},
                "maps": {name: [[k, v] for k, v in top] for name, top in last["maps"].items()},
                "globals": last["globals"], "errors": last["errors"]}


def _device_gone(link) -> bool:
    from luabpf.runtime.attach import link as bpflink
    fd = getattr(link, "link_fd", None)
    if fd is None:
        return False
    try:
        return bpflink.link_info(fd).get("ifindex", 1) == 0
    except OSError:
        return True


def _watch(args, loaded, link, pin_path: str, stop: _Stop) -> int:
    start = time.monotonic()
    deadline = start + args.duration if args.duration is not None else None
    sampler = _Sampler(loaded, link)
    if args.json:
        _emit({"event": "attached", "program": args.file, **link.info(), "pinned": pin_path,
               "pid": os.getpid()})
    else:
        err.print(f"luabpf: {args.file} attached: {link.describe()}; pinned at {pin_path}; "
                  "Ctrl-C detaches", markup=False)
    live = None if args.json else _live(_view(args.file, link, sampler, 0.0))
    next_json = start + 1.0
    try:
        while True:
            now = time.monotonic()
            if stop.reason is None and deadline is not None and now >= deadline:
                stop.reason = "duration"
            if stop.reason is None and sampler.last["device_gone"]:
                stop.reason = "device gone"
            if stop.reason:
                break
            wait = 1.0 / REFRESH_HZ if deadline is None else min(1.0 / REFRESH_HZ, deadline - now)
            for event in sampler.wait_events(max(0.0, wait)):
                if args.json:
                    _emit(event.as_json())
            sampler.last = sampler.sample()
            elapsed = time.monotonic() - start
            if live is not None:
                live.update(_view(args.file, link, sampler, elapsed))
            elif time.monotonic() >= next_json:
                next_json += 1.0
                _emit({"event": "stats", **sampler.numbers(elapsed)})
    finally:
        if live is not None:
            live.stop()
    link.detach()
    for event in sampler.wait_events(0.0):       # what was printed before the detach
        if args.json:
            _emit(event.as_json())
    sampler.last = sampler.sample()
    elapsed = time.monotonic() - start
    if args.json:
        _emit({"event": "detached", "reason": stop.reason, **sampler.numbers(elapsed)})
    else:
        out.print(_view(args.file, link, sampler, elapsed))
        err.print(f"luabpf: detached ({stop.reason}) after {elapsed:.1f} s", markup=False)
    if stop.reason == "device gone":
        return EXIT_ERROR
    return EXIT_ERROR if sampler.last["errors"] and _fatal(loaded) else EXIT_OK


def _fatal(loaded) -> bool:
    """Whether any counted site is a runtime error (drops alone do not fail the run)."""
    sites = loaded.state.manifest["sites"]
    return any(sites[i]["fatal"] for i in loaded.error_counts())


def _emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def _live(view):
    from rich.live import Live
    live = Live(view, console=out, refresh_per_second=REFRESH_HZ, transient=True,
                auto_refresh=True, redirect_stderr=False)
    live.start()
    return live


def _view(file: str, link, sampler: _Sampler, elapsed: float):
    from rich.table import Table
    from rich.text import Text
    n = sampler.numbers(elapsed)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("program", Text(f"{file} (id {link.prog_id})"))
    grid.add_row("attached", Text(link.describe() if link.attached else f"{link.describe()}, detached"))
    grid.add_row("elapsed", f"{elapsed:.1f} s")
    grid.add_row("runs", f"{n['run_cnt']:,} ({n['runs_per_s']:,.1f}/s)")
    grid.add_row("run time", f"{n['ns_per_run']:.0f} ns per run" if n["ns_per_run"] is not None
                 else "-")
    if n["verdicts"]:
        grid.add_row("verdicts", Text("  ".join(f"{k} {v:,}" for k, v in
                                                sorted(n["verdicts"].items(), key=lambda kv: -kv[1]))))
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


# ---- luabpf set and ls -----------------------------------------------------------------

def _assignment(text: str) -> tuple[str, object]:
    from luabpf.cli import parse_value
    name, eq, value = text.partition("=")
    if not eq or not name.strip():
        raise UsageError(f"{text!r}: write NAME=VALUE (an integer, true or false)")
    parsed = parse_value(value)
    if parsed is None:
        raise UsageError(f"{text!r}: a global cannot be set to nil")
    return name.strip(), parsed


def cmd_set(args) -> int:
    from luabpf.runtime import pins
    assignments = [_assignment(a) for a in args.assignments]
    try:
        with pins.open_running(args.target) as run:
            g = run.state.globals
            for name, _ in assignments:                 # all or nothing: check before writing
                if name not in g.layout:
                    known = ", ".join(sorted(g.layout)) or "none"
                    raise pins.PinError(f"{args.target} has no global '{name}' (its globals: {known})")
            for name, value in assignments:
                kind = g.layout[name]["kind"]
                if (kind == "bool") != isinstance(value, bool):
                    want = "booleans" if kind == "bool" else "integers"
                    raise pins.PinError(f"global '{name}' holds {want}; {lua_repr(value)} is not one")
            for name, value in assignments:
                old = g[name]
                g[name] = value
                out.print(f"{args.target}: {name} = {lua_repr(value)} (was {lua_repr(old)})",
                          markup=False)
    except pins.PinError as e:
        err.print(f"luabpf: {e}", markup=False)
        return EXIT_ERROR
    return EXIT_OK


def cmd_ls(args) -> int:
    from luabpf.runtime import pins
    try:
        runs = pins.list_running()
    except pins.PinError as e:
        err.print(f"luabpf: {e}", markup=False)
        return EXIT_ERROR
    rows = []
    for r in runs:
        row = r.as_json()
        row["globals"] = _globals_of(r) if r.alive else {}
        rows.append(row)
    if args.json:
        for row in rows:
            _emit(row)
        return EXIT_OK
    if not rows:
        out.print("nothing is running", markup=False)
        return EXIT_OK
    from rich.table import Table
    table = Table(show_edge=False)
    for col in ("name", "pid", "state", "file", "attached", "globals", "maps"):
        table.add_column(col)
    for row in rows:
        a = row["attach"] or {}
        where = f"{a.get('hook', '?')} on {a.get('dev', '?')}" if a else "-"
        table.add_row(row["name"], str(row["pid"]), "running" if row["alive"] else "stale",
                      row["file"], where,
                      " ".join(f"{k}={lua_repr(v)}" for k, v in row["globals"].items()),
                      " ".join(row["maps"]))
    out.print(table)
    return EXIT_OK


def _globals_of(run) -> dict:
    from luabpf.runtime import pins
    try:
        with pins.OpenedRun(run.path) as opened:
            return dict(opened.state.globals)
    except (OSError, pins.PinError):
        return {}
