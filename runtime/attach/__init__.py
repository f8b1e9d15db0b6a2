"""Attaching packet filters to network devices, and detaching them.

Owns the public face of attaching: `Link` (one attachment of one program to
one hook of one device, a context manager whose exit detaches), the one
error a user sees (`AttachError`, a single sentence), the parsing of the
command line's targets (`--xdp DEV`, `--tc DEV[:ingress|:egress]`) and
`attach(prog_fd, target)`. One module per attach kind does the work:
`xdp.py` (XDP), `tc.py` (tcx or clsact + cls_bpf), `perf.py` (timers and
tracepoints); `attachment.py` holds what they share (`Link`, `AttachError`),
`link.py` finds BPF links, `holder.py` names who holds a hook; the bpf(2)
link commands are `runtime/kernel.py`'s.

Lifetime. Both kinds prefer a BPF link (BPF_LINK_CREATE): the kernel
detaches the program when the link's last fd closes, so nothing stays
attached when the process exits or is killed. Only where the
kernel has no such link do they fall back to netlink attachment (XDP via
bcc, tc via a clsact qdisc and a cls_bpf filter); those survive the process,
so `Link.detach()` (called by `with`, by the CLI on Ctrl-C, SIGTERM and
after --duration, and at interpreter exit) removes them explicitly.
`Link.mode` says which one is in use: "link", "netlink" or "clsact".

Devices are looked up in the network namespace given as `netns=` (a name
under /run/netns), else in the caller's.
"""
from __future__ import annotations

from luabpf.runtime.attach.attachment import AttachError, Link, ifindex_of
from luabpf.runtime.attach.tc import attach_tc
from luabpf.runtime.attach.xdp import attach_xdp

__all__ = ["AttachError", "Link", "Target", "parse_target", "attach", "ifindex_of"]


class Target:
    """Where to attach: hook "xdp" or "tc", a device, a direction."""

    def __init__(self, hook: str, dev: str, direction: str = "ingress"):
        self.hook, self.dev, self.direction = hook, dev, direction

    def __str__(self) -> str:
        return self.dev if self.hook == "xdp" else f"{self.dev}:{self.direction}"

    def __eq__(self, other) -> bool:
        return isinstance(other, Target) and (self.hook, self.dev, self.direction) == \
            (other.hook, other.dev, other.direction)

    def __repr__(self) -> str:
        return f"Target({self.hook!r}, {self.dev!r}, {self.direction!r})"


def parse_target(hook: str, text: str) -> Target:
    """`--xdp DEV` or `--tc DEV[:ingress|:egress]` as a Target; ValueError
    with a one-line reason on a bad value."""
    dev, sep, direction = text.partition(":")
    if not dev:
        raise ValueError(f"--{hook}: a device name is needed, got {text!r}")
    if len(dev) > 15 or "/" in dev or any(c.isspace() for c in dev):
        raise ValueError(f"--{hook}: {dev!r} is not a network interface name")
    if hook == "xdp":
        if sep:
            raise ValueError("--xdp takes a device only (XDP sees ingress traffic)")
        return Target("xdp", dev)
    if hook != "tc":
        raise ValueError(f"unknown hook {hook!r}")
    direction = direction or "ingress"
    if direction not in ("ingress", "egress"):
        raise ValueError(f"--tc {text}: the direction is ingress or egress, not {direction!r}")
    return Target("tc", dev, direction)


def attach(prog_fd: int, target: Target, *, netns: str | None = None,
           use_link: bool | None = None) -> Link:
    """Attach the program to `target`. `use_link`: None prefers a BPF link
    and falls back to netlink; True requires a link; False forces netlink."""
    if target.hook == "xdp":
        return attach_xdp(prog_fd, target.dev, netns=netns, use_link=use_link)
    return attach_tc(prog_fd, target.dev, target.direction, netns=netns, use_link=use_link)

