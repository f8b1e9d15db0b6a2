"""What every attachment shares: the `Link` base class (one program on one hook,
detached by `detach()` or at interpreter exit through `LIVE`), `DeviceLink` (a
device's hook held by a BPF link), the user's one error (`AttachError`), and the
lookups each kind starts with (`ifindex_of`, `prog_id_of`, `NO_LINKS`: the errnos
of a kernel without the BPF link a kind asked for).

The attach kinds (`xdp.py`, `tc.py`, `perf.py`) import this module, and the
package's `attach()` imports them; nothing here imports a kind.
"""
from __future__ import annotations

import atexit
import errno
import socket

from luabpf.runtime import kernel
from luabpf.runtime.attach.holder import describe_elsewhere
from luabpf.runtime.netns import entered

__all__ = ["AttachError", "Link", "DeviceLink", "LIVE", "ifindex_of", "prog_id_of", "NO_LINKS",
           "ENOTSUPP"]

ENOTSUPP = 524                     # the kernel's internal "not supported" (include/linux/errno.h)
NO_LINKS = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, ENOTSUPP)


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
        LIVE.add(self)

    def detach(self) -> None:
        """Detach the program (once; later calls do nothing)."""
        if not self.attached:
            return
        self.attached = False
        LIVE.discard(self)
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
        self.link_fd = link_fd
        super().__init__(dev, ifindex, netns, direction, prog_id, kernel.link_info(link_fd)["id"])

    def _detach(self) -> None:
        try:
            kernel.link_detach(self.link_fd)
        finally:
            self.link_fd.close()


# Netlink attachments outlive the process: detach whatever is still attached
# when the interpreter exits normally (links need no help: their fds close).
# Strong references, so an attachment dropped without detach() is still found.
# Every kind (`Link`, `perf.PerfLink`) adds itself here and leaves on detach().
LIVE: set = set()


@atexit.register
def _detach_all() -> None:
    for link in list(LIVE):
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
        raise AttachError(f"{dev}: no such network interface{where}"
                          f"{describe_elsewhere(dev, netns)}") from None


def prog_id_of(prog_fd: int) -> int:
    return kernel.prog_info(prog_fd)["id"]
