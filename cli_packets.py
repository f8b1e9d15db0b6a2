"""The packet-filter subcommands of the `luabpf` command line: `test` and `run`.

Owns what `luabpf test FILE --pcap F | --packet HEX…` and `luabpf run FILE
--xdp DEV | --tc DEV[:ingress|:egress]` do and print (DESIGN §4); `cli.py`
registers them (`add_commands`) and keeps argument errors, exit codes and
the rendering of compile and verify errors.

`test` compiles the script for the hook (`--hook xdp|tc`, default xdp), loads
it, and runs every frame through BPF_PROG_TEST_RUN: a table of number,
tcpdump-like summary and verdict (`--json`: one JSON object per line), a
progress bar on a terminal when there are more than 200 frames. A frame the
kernel's test run cannot take (shorter than an Ethernet header) is reported
as refused. Exit 1 when the script does not compile or verify, or raised
runtime errors (listed after the table); 2 for a bad capture or hex argument.

`run` attaches the program (a BPF link, so it dies with the process), turns
on the kernel's run-time statistics (BPF_ENABLE_STATS) and shows, 4 times a
second, how often the program ran, its mean run time and its runtime errors
(`--json`: one JSON object per second, after an "attached" line). It detaches
on Ctrl-C, SIGTERM or SIGHUP, after `--duration S`, or when the device goes away.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

from luabpf.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, UsageError, err, out, read_source

PROGRESS_OVER = 200          # frames: above this, `test` shows a progress bar
TABLE_UP_TO = 1000           # frames: above this, `test` prints plain lines, not a table
REFRESH_HZ = 4


def add_commands(sub) -> None:
    """Register `test` and `run` on the `luabpf` subparsers."""
    t = sub.add_parser("test", help="run a packet filter on packets in the kernel (BPF_PROG_TEST_RUN)")
    t.add_argument("file", metavar="FILE.lua")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--pcap", metavar="F.pcap", help="the packets of a pcap or pcapng file")
    src.add_argument("--packet", nargs="+", metavar="HEX",
                     help="packets as hex, one argument per Ethernet frame")
    t.add_argument("--hook", choices=["xdp", "tc"], default="xdp",
                   help="what the filter is compiled for (default xdp)")
    t.add_argument("--max-loop", type=int, default=None, metavar="N")
    t.add_argument("--json", action="store_true", help="one JSON object per packet")
    t.set_defaults(run=_usage_here(cmd_test))

    r = sub.add_parser("run", help="attach a packet filter to a device and show live counters")
    r.add_argument("file", metavar="FILE.lua")
    where = r.add_mutually_exclusive_group(required=True)
    where.add_argument("--xdp", metavar="DEV", help="attach to DEV's XDP hook")
    where.add_argument("--tc", metavar="DEV[:DIR]",
                       help="attach to DEV's tc hook, ingress (default) or egress")
    r.add_argument("--netns", metavar="NAME", default=None,
                   help="the device is in network namespace NAME (as in `ip netns`)")
    r.add_argument("--duration", type=float, default=None, metavar="S",
                   help="detach and exit after S seconds")
    r.add_argument("--max-loop", type=int, default=None, metavar="N")
    r.add_argument("--json", action="store_true", help="one JSON object per second")
    r.set_defaults(run=_usage_here(cmd_run))


def _usage_here(cmd):
    """Report this module's usage errors itself: under `python -m luabpf.cli`
    the `__main__` module's UsageError is another class than luabpf.cli's."""
    def run(args) -> int:
        try:
            return cmd(args)
        except UsageError as e:
            err.print(f"luabpf: {e}", markup=False)
            return EXIT_USAGE
        except BrokenPipeError:               # `luabpf test … | head`: the reader left
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return EXIT_ERROR
    run.__name__ = run.__qualname__ = cmd.__name__
    return run


# ---- luabpf test --------------------------------------------------------------------

def _frames(args) -> list[bytes]:
    from luabpf.runtime.packets import PacketError, parse_hex, read_pcap
    try:
        return read_pcap(args.pcap) if args.pcap else parse_hex(args.packet)
    except PacketError as e:
        raise UsageError(str(e)) from None


def _compile(args, hook: str):
    import luabpf
    text = read_source(args.file)
    return luabpf.compile(text, args.file, hook=hook, max_loop=args.max_loop)


def _run_one(loaded, hook: str, frame: bytes) -> dict:
    """One frame through the program: a result row (verdict or refusal)."""
    from luabpf.runtime.errors import BpfError, PermissionProblem
    from luabpf.runtime.packets import MIN_FRAME
    from luabpf.runtime.verdicts import is_drop, verdict_name
    if len(frame) < MIN_FRAME:
        return {"verdict": "refused", "action": None,
                "reason": f"shorter than an Ethernet header ({MIN_FRAME} bytes)"}
    try:
        action = loaded.run(frame)
    except ValueError as e:
        return {"verdict": "refused", "action": None, "reason": str(e)}
    except PermissionProblem:
        raise
    except BpfError as e:
        return {"verdict": "refused", "action": None,
                "reason": f"the kernel's test run refused it ({e.strerror})"}
    return {"verdict": verdict_name(hook, action), "action": int(action), "drop": is_drop(action)}


def cmd_test(args) -> int:
    from luabpf.runtime.packets import summary
    frames = _frames(args)
    prog = _compile(args, args.hook)
    rows = []
    with prog.load() as loaded:
        progress = _progress(len(frames)) if len(frames) > PROGRESS_OVER else None
        try:
            task = progress.add_task("packets", total=len(frames)) if progress else None
            counts = loaded.error_counts()
            for i, frame in enumerate(frames, 1):
                row = {"packet": i, "length": len(frame), "summary": summary(frame)}
                row.update(_run_one(loaded, args.hook, frame))
                if counts is not None and row["action"] is not None:
                    now = loaded.error_counts()
                    new = [site for site, n in now.items() if n > counts.get(site, 0)]
                    if new:
                        row["runtime_error"] = "; ".join(_site_text(loaded, s) for s in new)
                    counts = now
                rows.append(row)
                if progress and (i % 64 == 0 or i == len(frames)):
                    progress.update(task, completed=i)
        finally:
            if progress:
                progress.stop()
        errors = loaded.describe_errors()
    if args.json:
        for row in rows:
            row.pop("drop", None)
            print(json.dumps(row))
        for line in errors:
            print(json.dumps({"runtime_error": line}))
    else:
        _print_verdicts(args.file, args.hook, rows)
        for line in errors:
            err.print(f"runtime error: {line}", markup=False)
    return EXIT_ERROR if errors else EXIT_OK


def _site_text(loaded, site: int) -> str:
    """"f.lua:LINE: message" for a runtime-error site of the program."""
    compiled = loaded.compiled
    try:
        s = compiled.sites[site]
        return f"{compiled.source.filename}:{s.line}: {s.message}"
    except (AttributeError, IndexError):
        return f"runtime error at site {site}"


def _progress(total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    p = Progress(TextColumn("testing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                 console=err, transient=True, disable=not err.is_terminal)
    p.start()
    return p


def _style(row: dict) -> str:
    return "yellow" if row["action"] is None else "red" if row.get("drop") else "green"


def _tally(rows: list[dict]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"{len(rows)} packet{'s' if len(rows) != 1 else ''}: {tally or 'none'}"


def _print_verdicts(file: str, hook: str, rows: list[dict]) -> None:
    from rich.table import Table
    from rich.text import Text
    if len(rows) > TABLE_UP_TO:          # a table of that many rows takes rich seconds to lay out
        text = Text()
        width = len(str(len(rows)))
        for row in rows:
            text.append(f"{row['packet']:>{width}}  ", style="dim")
            text.append(f"{row['verdict']:<13}", style=_style(row))
            text.append(f" {row['summary']}")
            if "runtime_error" in row:
                text.append(f"  ({row['runtime_error']})", style="yellow")
            text.append("\n")
        out.print(text, end="")
        out.print(_tally(rows), markup=False)
        return
    table = Table(title=f"{file} on {hook}", title_justify="left", show_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("packet", overflow="fold", ratio=1)
    table.add_column("verdict", overflow="fold", max_width=48)
    for row in rows:
        verdict = Text(row["verdict"], style=_style(row))
        if "runtime_error" in row:
            verdict.append(f"\n{row['runtime_error']}", style="yellow")
        table.add_row(str(row["packet"]), Text(row["summary"]), verdict)
    out.print(table)
    out.print(_tally(rows), markup=False)


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


def _sample(loaded, link) -> dict:
    from luabpf.runtime import kernel
    info = kernel.prog_info(loaded.fd)
    return {"run_cnt": info["run_cnt"], "run_time_ns": info["run_time_ns"],
            "errors": loaded.describe_errors(), "device_gone": _device_gone(link)}


def _device_gone(link) -> bool:
    from luabpf.runtime.attach import link as bpflink
    fd = getattr(link, "link_fd", None)
    if fd is None:
        return False
    try:
        return bpflink.link_info(fd).get("ifindex", 1) == 0
    except OSError:
        return True


def cmd_run(args) -> int:
    from luabpf.runtime import kernel
    from luabpf.runtime.attach import AttachError, attach, parse_target
    hook = "xdp" if args.xdp else "tc"
    try:
        target = parse_target(hook, args.xdp or args.tc)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.duration is not None and args.duration < 0:
        raise UsageError("--duration must not be negative")
    prog = _compile(args, hook)
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
                return _watch(args, loaded, link, stop)
            finally:
                link.detach()
                if stats is not None:
                    stats.close()
    finally:
        stop.restore()


def _watch(args, loaded, link, stop: _Stop) -> int:
    start = time.monotonic()
    deadline = start + args.duration if args.duration is not None else None
    first = _sample(loaded, link)
    if args.json:
        _emit({"event": "attached", "program": args.file, **link.info(), "pid": os.getpid()})
    else:
        err.print(f"luabpf: {args.file} attached: {link.describe()}; Ctrl-C detaches", markup=False)
    live = None if args.json else _live(_view(args.file, link, first, first, 0.0))
    last = first
    next_json = start + 1.0
    try:
        while True:
            now = time.monotonic()
            if stop.reason is None and deadline is not None and now >= deadline:
                stop.reason = "duration"
            if stop.reason is None and last["device_gone"]:
                stop.reason = "device gone"
            if stop.reason:
                break
            time.sleep(min(1.0 / REFRESH_HZ, max(0.0, (deadline or now + 1) - now)))
            last = _sample(loaded, link)
            elapsed = time.monotonic() - start
            if live is not None:
                live.update(_view(args.file, link, first, last, elapsed))
            elif time.monotonic() >= next_json:
                next_json += 1.0
                _emit({"event": "stats", **_numbers(first, last, elapsed)})
    finally:
        if live is not None:
            live.stop()
    elapsed = time.monotonic() - start
    link.detach()
    final = {"event": "detached", "reason": stop.reason, **_numbers(first, last, elapsed)}
    if args.json:
        _emit(final)
    else:
        out.print(_view(args.file, link, first, last, elapsed))
        err.print(f"luabpf: detached ({stop.reason}) after {elapsed:.1f} s", markup=False)
    if stop.reason == "device gone":
        return EXIT_ERROR
    return EXIT_ERROR if last["errors"] else EXIT_OK


def _numbers(first: dict, last: dict, elapsed: float) -> dict:
    runs = last["run_cnt"] - first["run_cnt"]
    ns = last["run_time_ns"] - first["run_time_ns"]
    return {"elapsed": round(elapsed, 3), "run_cnt": runs, "run_time_ns": ns,
            "ns_per_run": round(ns / runs, 1) if runs else None,
            "runs_per_s": round(runs / elapsed, 1) if elapsed > 0 else 0.0,
            "errors": last["errors"]}


def _emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def _live(view):
    from rich.live import Live
    live = Live(view, console=out, refresh_per_second=REFRESH_HZ, transient=True,
                auto_refresh=True, redirect_stderr=False)
    live.start()
    return live


def _view(file: str, link, first: dict, last: dict, elapsed: float):
    from rich.table import Table
    from rich.text import Text
    n = _numbers(first, last, elapsed)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("program", Text(f"{file} (id {link.prog_id})"))
    grid.add_row("attached", Text(link.describe() if link.attached else f"{link.describe()}, detached"))
    grid.add_row("elapsed", f"{elapsed:.1f} s")
    grid.add_row("runs", f"{n['run_cnt']:,} ({n['runs_per_s']:,.1f}/s)")
    grid.add_row("run time", f"{n['ns_per_run']:.0f} ns per run" if n["ns_per_run"] is not None
                 else "-")
    if n["errors"]:
        grid.add_row("runtime errors", Text("\n".join(n["errors"]), style="red"))
    else:
        grid.add_row("runtime errors", Text("none", style="green"))
    return grid

