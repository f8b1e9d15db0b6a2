"""Attaching packet filters to network devices, and detaching them.

Owns the public face of attaching: `Link` (one attachment of one program to
one hook of one device, a context manager whose exit detaches), the one
error a user sees (`AttachError`, a single sentence), the parsing of the
command line's targets (`--xdp DEV`, `--tc DEV[:ingress|:egress]`) and
`attach(prog_fd, target)`. One module per attach kind does the work:
`xdp.py` (XDP), `tc.py` (tcx or clsact + cls_bpf); `link.py` holds the
bpf(2) link commands.

Lifetime. Both kinds prefer a BPF link (BPF_LINK_CREATE): the kernel
detaches the program when the link's last fd closes, so nothing stays
attached when the process exits or is killed (DESIGN §7). Only where the
kernel has no such link do they fall back to netlink attachment (XDP via
bcc, tc via a clsact qdisc and a cls_bpf filter); those survive the process,
so `Link.detach()` (called by `with`, by the CLI on Ctrl-C, SIGTERM and
after --duration, and at interpreter exit) removes them explicitly.
`Link.mode` says which one is in use: "link", "netlink" or "clsact".

Devices are looked up in the network namespace given as `netns=` (a name
under /run/netns), else in the caller's.
"""
from __future__ import annotations

import atexit
import socket

from luabpf.runtime.netns import entered

__all__ = ["AttachError", "Link", "Target", "parse_target", "attach", "ifindex_of"]


class AttachError(Exception):
    """Attaching or detaching failed; str() is one sentence for the user."""


class Link:
    """A program attached to a device's hook. Subclasses implement
    `_detach()`; `detach()` is idempotent and `close()` is its alias.

    Attributes: `kind` ("xdp" or "tc"), `dev`, `ifindex`, `netns`,
    `direction` ("ingress"/"egress"; XDP is always ingress), `mode`
    ("link", "netlink", "clsact"), `prog_id`, `link_id` (the kernel's
    BPF link id, None for netlink attachments)."""

    kind = "?"
    mode = "?"

    def __init__(self, dev: str, ifindex: int, netns: str | None, direction: str,
                 prog_id: int, link_id: int | None = None):
        self.dev, self.ifindex, self.netns, self.direction = dev, ifindex, netns, direction
        self.prog_id, self.link_id = prog_id, link_id
        self.attached = True
        _LIVE.add(self)

    def detach(self) -> None:
        """Detach the program (once; later calls do nothing)."""
        if not self.attached:
            return
        self.attached = False
        _LIVE.discard(self)
        self._detach()

    close = detach

    def _detach(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "Link":
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def describe(self) -> str:
        """"xdp on eth0 (BPF link 12)", "tc egress on veth1 (clsact)"."""
        where = f"{self.dev}" + (f" in netns {self.netns}" if self.netns else "")
        hook = "xdp" if self.kind == "xdp" else f"tc {self.direction}"
        how = f"BPF link {self.link_id}" if self.link_id is not None else self.mode
        return f"{hook} on {where} ({how})"

    def info(self) -> dict:
        """A JSON-ready description."""
        return {"hook": self.kind, "dev": self.dev, "ifindex": self.ifindex,
                "netns": self.netns, "direction": self.direction, "mode": self.mode,
                "prog_id": self.prog_id, "link_id": self.link_id, "attached": self.attached}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}{'' if self.attached else ' detached'}>"


class DeviceLink(Link):
    """A program held on a device's hook by a BPF link (`.link_fd`): the kernel lets go
    when the fd closes; `_detach` detaches the link first, so other holders see it gone."""
    mode = "link"

    def __init__(self, link_fd, dev: str, ifindex: int, netns: str | None, direction: str,
                 prog_id: int):
        from luabpf.runtime.attach import link as bpflink
        self.link_fd = link_fd
        super().__init__(dev, ifindex, netns, direction, prog_id, bpflink.link_info(link_fd)["id"])

    def _detach(self) -> None:
        from luabpf.runtime.attach import link as bpflink
        try:
            bpflink.link_detach(self.link_fd)
        finally:
            self.link_fd.close()


# Netlink attachments outlive the process: detach whatever is still attached
# when the interpreter exits normally (links need no help: their fds close).
# Strong references, so an attachment dropped without detach() is still found.
_LIVE: "set[Link]" = set()


@atexit.register
def _detach_all() -> None:
    for link in list(_LIVE):
        try:
            link.detach()
        except Exception:
            pass


def ifindex_of(dev: str, netns: str | None = None) -> int:
    """The ifindex of `dev` in namespace `netns` (else the caller's);
    AttachError when there is no such device."""
    try:
        with entered(netns):
            return socket.if_nametoindex(dev)
    except OSError as e:
        where = f" in network namespace {netns}" if netns else " in this network namespace"
        if netns and "network namespace" in str(e):
            raise AttachError(e.strerror or str(e)) from None
        from luabpf.runtime.attach.holder import describe_elsewhere
        raise AttachError(f"{dev}: no such network interface{where}"
                          f"{describe_elsewhere(dev, netns)}") from None


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
        from luabpf.runtime.attach.xdp import attach_xdp
        return attach_xdp(prog_fd, target.dev, netns=netns, use_link=use_link)
    from luabpf.runtime.attach.tc import attach_tc
    return attach_tc(prog_fd, target.dev, target.direction, netns=netns, use_link=use_link)


def prog_id_of(prog_fd: int) -> int:
    from luabpf.runtime import kernel
    return kernel.prog_info(prog_fd)["id"]

