"""The hooks by name, at run time: how each hook's programs attach and report.

Owns `RUNTIME_HOOKS`, keyed by the names of compiler/hooks/table.py ('xdp', 'tc',
'cpufreq', 'tracepoint', 'function'): for each, the flag `luabpf run` selects it with,
how its loaded programs attach (`attach(loaded, place) → Attached`), and whether a
run's report is its first link's (a device's hook: dev, mode, prog_id…) or the hook's
name, what it needs of the kernel (`doing`, `prog_types`: the capabilities a run
asks for) and how `luabpf ls` says where a run is (`where`). Loading is the same for every hook (runtime/load.py: a `LoadedProgram` for one
program, a `LoadedScript` for several); test runs are `LoadedProgram.run` (a frame, the
packet hooks) and `.call` (arguments, the function hook). Adding a hook is adding its
entry here next to its record in the compiler's table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from luabpf.compiler.bpf.uapi import ProgType
from luabpf.runtime.attach import attach as attach_device, parse_target
from luabpf.runtime.attach.perf import attach_timer, attach_tracepoint, online_cpus
from luabpf.runtime.cpufreq import Actuator, SysfsTree
from luabpf.runtime.policy import Policy


@dataclass
class Place:
    """Where and how `luabpf run` attaches, as its flags say."""
    device: str | None = None          # --xdp DEV, --tc DEV[:DIR]
    netns: str | None = None           # the device's network namespace
    interval_ms: int = 20              # --cpufreq: how often the policy runs
    sysfs_root: str = "/sys"           # --cpufreq: the tree read and written
    dry_run: bool = False              # --cpufreq: decide, write nothing


class BadPlace(ValueError):
    """The place given cannot be attached to (a malformed device name): a usage error."""


@dataclass
class Attached:
    """What attaching made: links (each with .detach(), .describe(), .info(), .attached)
    and, for a CPU-frequency policy, the `Policy` the run ticks."""
    links: list = field(default_factory=list)
    policy: Policy | None = None


def _attach_packet(name: str):
    def attach(loaded, place: Place) -> Attached:
        """The filter on the device's hook (BadPlace: a malformed device)."""
        try:
            target = parse_target(name, place.device)
        except ValueError as e:
            raise BadPlace(str(e)) from None
        return Attached([attach_device(loaded.fd, target, netns=place.netns)])
    return attach


def _attach_policy(loaded, place: Place) -> Attached:
    """The policy's actuator started, then its timer on every CPU and its sched_switch
    program; the actuator is stopped again if attaching fails."""
    tree = SysfsTree(place.sysfs_root)            # CpufreqError: one sentence for cli.report
    actuator = Actuator(tree, dry_run=place.dry_run, min_gap_s=place.interval_ms / 1000 * 0.9)
    attached = Attached(policy=Policy(loaded, tree, actuator, online_cpus()).start())
    try:
        attached.links.append(attach_timer(loaded.fds[0], place.interval_ms, attached.policy.cpus))
        attached.links.append(attach_tracepoint(loaded.fds[1], "sched", "sched_switch"))
    except BaseException:
        detach(attached)
        raise
    return attached


def _attach_tracepoints(loaded, place: Place) -> Attached:
    attached = Attached()
    try:
        for compiled, fd in zip(loaded.programs, loaded.fds):
            hook = compiled.hook
            attached.links.append(attach_tracepoint(fd, hook.category, hook.event))
    except BaseException:
        detach(attached)
        raise
    return attached


def detach(attached: Attached) -> None:
    """Put the governors back, then detach every link (each step runs, whatever fails)."""
    try:
        if attached.policy is not None:
            attached.policy.stop()
    finally:
        for link in attached.links:
            link.detach()


def _on_device(attach: dict) -> str:
    return f"{attach.get('hook')} on {attach.get('dev', '?')}"


def _every_interval(attach: dict) -> str:
    timer = next((l for l in attach.get("links") or [] if l.get("kind") == "timer"), {})
    return (f"cpufreq every {timer.get('interval_ms', '?')} ms on "
            f"{len(attach.get('cpus') or [])} CPUs")


def _on_events(attach: dict) -> str:
    events = [l.get("event", "?") for l in attach.get("links") or [] if l.get("kind") == "tracepoint"]
    return "tracepoint " + ", ".join(events) if events else "-"


@dataclass(frozen=True)
class RuntimeHook:
    name: str
    flag: str | None          # the `luabpf run` flag that picks it; None: no flag needed
    attach: Callable | None   # (loaded, Place) → Attached; None: nothing to attach to
    doing: str                # what a run does, for a missing capability's sentence
    prog_types: tuple         # the program types a run loads (their capabilities)
    where: Callable[[dict], str]  # a run's pinned attach info → "xdp on eth0" (`luabpf ls`)
    device_report: bool = False   # the run reports its first link's fields (dev, mode…)


RUNTIME_HOOKS: dict[str, RuntimeHook] = {
    "xdp": RuntimeHook("xdp", "--xdp", _attach_packet("xdp"), "attaching an XDP filter",
                       (ProgType.XDP,), _on_device, device_report=True),
    "tc": RuntimeHook("tc", "--tc", _attach_packet("tc"), "attaching a tc filter",
                      (ProgType.SCHED_CLS,), _on_device, device_report=True),
    "cpufreq": RuntimeHook("cpufreq", "--cpufreq", _attach_policy,
                           "running a CPU-frequency policy",
                           (ProgType.PERF_EVENT, ProgType.TRACEPOINT), _every_interval),
    "tracepoint": RuntimeHook("tracepoint", None, _attach_tracepoints,
                              "attaching tracepoint programs", (ProgType.TRACEPOINT,), _on_events),
    "function": RuntimeHook("function", None, None, "calling functions", (ProgType.SYSCALL,),
                            lambda attach: "-"),
}
