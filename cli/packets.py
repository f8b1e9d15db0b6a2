"""The packet-filter subcommand of the `luabpf` command line: `test`.

Owns what `luabpf test FILE --pcap F | --packet HEX…` does and prints
(docs/filters-contract.md, "Attaching, and the CLI's `test` and `run`"); `app` registers
it (`add_commands`); `common` keeps argument errors, exit codes and the rendering of
compile and verify errors. `luabpf run` is `run`'s.

`test` compiles the script for the hook (`--hook xdp|tc`; by default tc when the
script uses tc.* verdicts, else xdp), loads it, and runs every frame through
BPF_PROG_TEST_RUN: a table of number,
tcpdump-like summary and verdict (`--json`: one JSON object per line), a
progress bar on a terminal when there are more than 200 frames. A frame the
kernel's test run cannot take (shorter than an Ethernet header) is reported
as refused. Exit 1 when the script does not compile or verify, or raised
runtime errors (listed after the table); 2 for a bad capture or hex argument.
"""
from __future__ import annotations

import json

from luabpf.cli.common import (EXIT_ERROR, EXIT_OK, UsageError, add_cost_flags, err, out,
                               read_source)
from luabpf import api
from luabpf.compiler.hooks.packet import PACKET_HOOKS
from luabpf.runtime.errors import BpfError, PermissionProblem
from luabpf.runtime.packets import MIN_FRAME, PacketError, parse_hex, read_pcap, summary
from luabpf.runtime.verdicts import is_drop, verdict_name

PROGRESS_OVER = 200          # frames: above this, `test` shows a progress bar
TABLE_UP_TO = 1000           # frames: above this, `test` prints plain lines, not a table


def add_commands(sub) -> None:
    """Register `test` on the `luabpf` subparsers."""
    t = sub.add_parser("test", help="run a packet filter on packets in the kernel (BPF_PROG_TEST_RUN)")
    t.add_argument("file", metavar="FILE.lua")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--pcap", metavar="F.pcap", help="the packets of a pcap or pcapng file")
    src.add_argument("--packet", nargs="+", metavar="HEX",
                     help="packets as hex, one argument per Ethernet frame")
    t.add_argument("--hook", choices=tuple(PACKET_HOOKS), default=None,
                   help="what the filter is compiled for (default: tc when the script uses "
                        "tc.* verdicts, else xdp)")
    add_cost_flags(t)
    t.add_argument("--json", action="store_true", help="one JSON object per packet")
    t.set_defaults(run=cmd_test)


def _frames(args) -> list[bytes]:
    try:
        return read_pcap(args.pcap) if args.pcap else parse_hex(args.packet)
    except PacketError as e:
        raise UsageError(str(e)) from None


def _compile(args, hook: str):
    text = read_source(args.file)
    return api.compile(text, args.file, hook=hook, max_loop=args.max_loop, loops="kernel",
                       budget=args.budget)


def _run_one(loaded, hook: str, frame: bytes) -> dict:
    """One frame through the program: a result row (verdict or refusal)."""
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
    frames = _frames(args)
    prog = _compile(args, args.hook)
    args.hook = prog.hook                        # the hook chosen when --hook was not given
    rows = []
    with prog.load() as loaded:
        progress = _progress() if len(frames) > PROGRESS_OVER else None
        try:
            task = progress.add_task("packets", total=len(frames)) if progress else None
            counts = loaded.error_counts()
            stream = loaded.events()
            for i, frame in enumerate(frames, 1):
                row = {"packet": i, "length": len(frame), "summary": summary(frame)}
                row.update(_run_one(loaded, args.hook, frame))
                printed = stream.poll() if stream is not None else []
                if printed:                      # what this packet's run printed, in order
                    row["printed"] = [e.render() for e in printed]
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
        s = compiled.site(site)
        return f"{compiled.source.filename}:{s.line}: {s.message}"
    except (AttributeError, IndexError):
        return f"runtime error at site {site}"


def _progress():
    # rich costs ~50 ms to import: only a terminal run of many frames shows progress
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    p = Progress(TextColumn("testing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                 console=err.real, transient=True, disable=not err.is_terminal)
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
    from rich.table import Table    # rich costs ~50 ms to import: only for the table
    from rich.text import Text      # (as above)
    if len(rows) > TABLE_UP_TO:          # a table of that many rows takes rich seconds to lay out
        text = Text()
        width = len(str(len(rows)))
        for row in rows:
            text.append(f"{row['packet']:>{width}}  ", style="dim")
            text.append(f"{row['verdict']:<13}", style=_style(row))
            text.append(f" {row['summary']}")
            if "runtime_error" in row:
                text.append(f"  ({row['runtime_error']})", style="yellow")
            for line in row.get("printed", []):
                text.append(f"\n{' ' * (width + 2)}{line}", style="cyan")
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
        packet = Text(row["summary"])
        for line in row.get("printed", []):
            packet.append(f"\n{line}", style="cyan")
        table.add_row(str(row["packet"]), packet, verdict)
    out.print(table)
    out.print(_tally(rows), markup=False)
