"""XDP: attaching a program to a network device's receive path.

Owns `attach_xdp` and the two kinds of XDP attachment:
- `XdpLink` — BPF_LINK_CREATE with attach type BPF_XDP (Linux ≥ 5.9). The
  kernel detaches the program when the link's last fd closes, so it dies
  with the process. This is what luabpf uses whenever the kernel has it.
- `XdpNetlink` — the older netlink attachment (IFLA_XDP), through bcc's
  `bpf_attach_xdp`, used only when BPF links for XDP are not available.
  It survives the process: `detach()` removes it, and only if the program
  on the device is still ours.

Mode: "auto" lets the kernel choose (native XDP when the driver has it, as
veth does, else generic), "native" (XDP_FLAGS_DRV_MODE) or "generic"
(XDP_FLAGS_SKB_MODE). Does not own loading programs (`runtime/load.py`) or
the device's namespace (`runtime/netns.py`).
"""
from __future__ import annotations

import ctypes
import errno
import os

from luabpf.compiler.bpf.uapi import (XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE,
                                      XDP_FLAGS_UPDATE_IF_NOEXIST, AttachType)
from luabpf.runtime import kernel
from luabpf.runtime.attach import holder
from luabpf.runtime.attach.attachment import (NO_LINKS, AttachError, DeviceLink, Link, ifindex_of,
                                              prog_id_of)
from luabpf.runtime.errors import PermissionProblem
from luabpf.runtime.netns import entered

__all__ = ["attach_xdp", "XdpLink", "XdpNetlink", "xdp_prog_id", "MODES"]

MODES = {"auto": 0, "native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE}


class XdpLink(DeviceLink):
    """An XDP program held on a device by a BPF link (`.link_fd`); XDP sees ingress."""
    kind = "xdp"

    def __init__(self, link_fd: kernel.Fd, dev: str, ifindex: int, netns: str | None,
                 prog_id: int):
        super().__init__(link_fd, dev, ifindex, netns, "ingress", prog_id)


class XdpNetlink(Link):
    """An XDP program attached by netlink (no BPF link): outlives the
    process unless detached."""
    kind, mode = "xdp", "netlink"

    def __init__(self, dev: str, ifindex: int, netns: str | None, prog_id: int, flags: int):
        self.flags = flags
        super().__init__(dev, ifindex, netns, "ingress", prog_id, None)

    def _detach(self) -> None:
        current = xdp_prog_id(self.dev, self.netns)
        if current is None or current != self.prog_id:
            return          # the device is gone, or someone replaced our program
        flags = self.flags & ~XDP_FLAGS_UPDATE_IF_NOEXIST
        _bcc_attach(self.dev, self.netns, -1, flags, "detach")


def xdp_prog_id(dev: str, netns: str | None = None) -> int | None:
    """The id of the XDP program on `dev` (any mode), or None: none there,
    or no such device."""
    from pyroute2 import IPRoute    # pyroute2 takes ~0.3 s to import: on first use only
    with entered(netns), IPRoute() as ipr:
        links = ipr.get_links(ifname=dev) if ipr.link_lookup(ifname=dev) else []
    if not links:
        return None
    xdp = links[0].get_attr("IFLA_XDP")
    if not xdp:
        return None
    for name in ("IFLA_XDP_PROG_ID", "IFLA_XDP_DRV_PROG_ID", "IFLA_XDP_SKB_PROG_ID",
                 "IFLA_XDP_HW_PROG_ID"):
        pid = xdp.get_attr(name)
        if pid:
            return int(pid)
    return None


def _busy(dev: str, netns: str | None) -> AttachError:
    """What holds the device's XDP hook, and what removes it: another `luabpf run` (stop
    it), a BPF link of another process (`bpftool link detach`; `ip link … xdp off` cannot
    remove a link's program), or a netlink attachment (`ip link … xdp off`)."""
    other = xdp_prog_id(dev, netns)
    where = f"{dev}" + (f" (network namespace {netns})" if netns else "")
    if other is None:
        return AttachError(f"{where} already has an XDP program; luabpf does not replace it")
    run = holder.luabpf_run_of(other)
    if run is not None:
        return AttachError(f"{where} already has an XDP program: attached by luabpf run "
                           f"'{run.name}', pid {run.pid} (see `luabpf ls`); stop that run first, "
                           f"or attach to another device")
    link_ids = holder.link_ids_of(other)
    if link_ids:
        ids = ", ".join(str(i) for i in link_ids)
        return AttachError(f"{where} already has an XDP program (id {other}), held by BPF link "
                           f"{ids} of another process; luabpf does not replace it (it goes when "
                           f"that process exits, or with: bpftool link detach id {link_ids[0]})")
    if link_ids is None:
        return AttachError(f"{where} already has an XDP program (id {other}); luabpf does not "
                           f"replace it (`bpftool link` shows whether a BPF link holds it; if none "
                           f"does, remove it with: ip link set dev {dev} xdp off)")
    return AttachError(f"{where} already has an XDP program (id {other}); luabpf does not "
                       f"replace it (remove it with: ip link set dev {dev} xdp off)")


def attach_xdp(prog_fd: int, dev: str, *, netns: str | None = None, mode: str = "auto",
               use_link: bool | None = None) -> Link:
    """Attach XDP program `prog_fd` to `dev` (in namespace `netns`, else the
    caller's). `use_link`: None — a BPF link, else netlink if the kernel has
    no XDP links; True — a link or an error; False — netlink only."""
    if mode not in MODES:
        raise ValueError(f"XDP mode is one of {', '.join(MODES)}, not {mode!r}")
    ifindex = ifindex_of(dev, netns)
    prog_id = prog_id_of(prog_fd)
    flags = MODES[mode]
    if use_link is not False:
        try:
            with entered(netns):
                fd = kernel.link_create(prog_fd, AttachType.XDP, ifindex, flags=flags)
        except PermissionProblem:
            raise
        except kernel.BpfError as e:
            if e.errno in (errno.EBUSY, errno.EEXIST):
                raise _busy(dev, netns) from None
            if use_link or e.errno not in NO_LINKS:
                raise AttachError(f"cannot attach the XDP program to {dev}: {e.strerror}") from None
        else:
            try:
                return XdpLink(fd, dev, ifindex, netns, prog_id)
            except BaseException:
                kernel.link_detach(fd)
                fd.close()
                raise
    flags |= XDP_FLAGS_UPDATE_IF_NOEXIST
    _bcc_attach(dev, netns, prog_fd, flags, "attach")
    return XdpNetlink(dev, ifindex, netns, prog_id, flags)


def _bcc_attach(dev: str, netns: str | None, fd: int, flags: int, what: str) -> None:
    """bcc's bpf_attach_xdp (netlink): fd -1 detaches."""
    try:
        from bcc.libbcc import lib     # optional, and only for kernels without XDP links
    except ImportError:
        raise AttachError("this kernel has no BPF links for XDP and bcc (python3-bpfcc), "
                          "needed to attach without them, is not installed") from None
    with entered(netns):
        ret = lib.bpf_attach_xdp(dev.encode(), fd, flags)
    if ret < 0:
        err = ctypes.get_errno() or -ret
        if what == "attach" and err in (errno.EBUSY, errno.EEXIST):
            raise _busy(dev, netns)
        raise AttachError(f"cannot {what} the XDP program on {dev}: "
                          f"{os.strerror(err) if err > 0 else 'netlink error'}")
