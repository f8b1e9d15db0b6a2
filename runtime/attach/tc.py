"""tc: attaching a SCHED_CLS program to a device's ingress or egress path.

Owns `attach_tc` and the two kinds of tc attachment:
- `TcxLink` — BPF_LINK_CREATE with attach type BPF_TCX_INGRESS or
  BPF_TCX_EGRESS (tcx, Linux ≥ 6.6): no qdisc, and the kernel detaches the
  program when the link's last fd closes, so it dies with the process.
  luabpf uses it whenever the kernel has it.
- `ClsactFilter` — the classic way, with pyroute2: a `clsact` qdisc (made if
  the device has none) and a `cls_bpf` filter in direct-action mode on its
  ingress (ffff:fff2) or egress (ffff:fff3) hook, at a priority no other
  filter of that hook uses. It survives the process: `detach()` deletes the
  filter, and the qdisc too when luabpf made it and no filter is left on it.

Either way the program's return value is a TC_ACT_* (`runtime/verdicts.py`).
Does not own loading programs or the device's namespace (`runtime/netns.py`).
"""
from __future__ import annotations

import errno

from luabpf.compiler.bpf.uapi import AttachType
from luabpf.runtime import kernel
from luabpf.runtime.attach.attachment import (NO_LINKS, AttachError, DeviceLink, Link, ifindex_of,
                                              prog_id_of)
from luabpf.runtime.errors import PermissionProblem
from luabpf.runtime.netns import entered

__all__ = ["attach_tc", "TcxLink", "ClsactFilter", "DIRECTIONS", "clsact_filters", "has_clsact"]

DIRECTIONS = {"ingress": AttachType.TCX_INGRESS, "egress": AttachType.TCX_EGRESS}
TC_H_CLSACT = 0xFFFFFFF1
CLSACT_PARENT = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}   # TC_H_MIN_INGRESS/EGRESS
FILTER_NAME = "luabpf"
FIRST_PRIO = 49152            # where iproute2 starts when no `pref` is given


class TcxLink(DeviceLink):
    """A SCHED_CLS program held on a device's tcx hook by a BPF link."""
    kind = "tc"


class ClsactFilter(Link):
    """A cls_bpf filter (direct action) on a clsact qdisc: outlives the
    process unless detached."""
    kind, mode = "tc", "clsact"

    def __init__(self, dev: str, ifindex: int, netns: str | None, direction: str,
                 prog_id: int, prio: int, made_qdisc: bool):
        self.prio, self.made_qdisc = prio, made_qdisc
        super().__init__(dev, ifindex, netns, direction, prog_id, None)

    def _detach(self) -> None:
        from pyroute2 import IPRoute    # pyroute2 takes ~0.3 s to import: on first use only
        from pyroute2.netlink.exceptions import NetlinkError
        parent = CLSACT_PARENT[self.direction]
        with entered(self.netns), IPRoute() as ipr:
            if not ipr.link_lookup(ifname=self.dev):
                return                      # the device is gone, and its filters with it
            try:
                ipr.tc("del-filter", "bpf", self.ifindex, parent=parent, prio=self.prio)
            except NetlinkError as e:
                if e.code not in (errno.ENOENT, errno.EINVAL):
                    raise AttachError(f"cannot remove the tc filter from {self.dev}: "
                                      f"{e.args[1] if len(e.args) > 1 else e}") from None
            if self.made_qdisc and not any(_filters(ipr, self.ifindex, p)
                                           for p in CLSACT_PARENT.values()):
                try:
                    ipr.tc("del", "clsact", self.ifindex)
                except NetlinkError:
                    pass


def _filters(ipr, ifindex: int, parent: int) -> list:
    return list(ipr.get_filters(index=ifindex, parent=parent))


def clsact_filters(dev: str, direction: str, netns: str | None = None) -> list[dict]:
    """The cls filters on `dev`'s clsact hook: [{"prio", "handle", "kind",
    "name"}] (empty when there is no clsact qdisc)."""
    from pyroute2 import IPRoute    # pyroute2 takes ~0.3 s to import: on first use only
    out = []
    with entered(netns), IPRoute() as ipr:
        found = ipr.link_lookup(ifname=dev)
        if not found:
            return []
        for f in _filters(ipr, found[0], CLSACT_PARENT[direction]):
            if not f["handle"]:
                continue                    # the chain's head, not a filter
            opts = f.get_attr("TCA_OPTIONS")
            name = opts.get_attr("TCA_BPF_NAME") if opts else None
            out.append({"prio": f["info"] >> 16, "handle": f["handle"],
                        "kind": f.get_attr("TCA_KIND"), "name": name})
    return out


def has_clsact(dev: str, netns: str | None = None) -> bool:
    """Whether `dev` has a clsact qdisc."""
    from pyroute2 import IPRoute    # pyroute2 takes ~0.3 s to import: on first use only
    with entered(netns), IPRoute() as ipr:
        found = ipr.link_lookup(ifname=dev)
        return bool(found) and any(q.get_attr("TCA_KIND") == "clsact"
                                   for q in ipr.get_qdiscs(index=found[0]))


def attach_tc(prog_fd: int, dev: str, direction: str = "ingress", *, netns: str | None = None,
              use_link: bool | None = None) -> Link:
    """Attach SCHED_CLS program `prog_fd` to `dev`'s `direction` hook (in
    namespace `netns`, else the caller's). `use_link`: None — a tcx link,
    else clsact if the kernel has no tcx; True — tcx or an error; False —
    clsact only."""
    if direction not in DIRECTIONS:
        raise ValueError(f"tc direction is ingress or egress, not {direction!r}")
    ifindex = ifindex_of(dev, netns)
    prog_id = prog_id_of(prog_fd)
    if use_link is not False:
        try:
            with entered(netns):
                fd = kernel.link_create(prog_fd, DIRECTIONS[direction], ifindex)
        except PermissionProblem:
            raise
        except kernel.BpfError as e:
            if use_link or e.errno not in NO_LINKS:
                raise AttachError(f"cannot attach the tc program to {dev} {direction}: "
                                  f"{e.strerror}") from None
        else:
            try:
                return TcxLink(fd, dev, ifindex, netns, direction, prog_id)
            except BaseException:
                kernel.link_detach(fd)
                fd.close()
                raise
    return _attach_clsact(prog_fd, dev, ifindex, direction, netns, prog_id)


def _attach_clsact(prog_fd: int, dev: str, ifindex: int, direction: str, netns: str | None,
                   prog_id: int) -> ClsactFilter:
    from pyroute2 import IPRoute    # pyroute2 takes ~0.3 s to import: on first use only
    from pyroute2.netlink.exceptions import NetlinkError
    parent = CLSACT_PARENT[direction]
    made_qdisc = False
    with entered(netns), IPRoute() as ipr:
        try:
            if not any(q.get_attr("TCA_KIND") == "clsact" for q in ipr.get_qdiscs(index=ifindex)):
                ipr.tc("add", "clsact", ifindex)
                made_qdisc = True
            used = {f["info"] >> 16 for f in _filters(ipr, ifindex, parent)}
            prio = next(p for p in range(FIRST_PRIO, 0, -1) if p not in used)
            ipr.tc("add-filter", "bpf", ifindex, handle=1, fd=prog_fd, name=FILTER_NAME,
                   parent=parent, prio=prio, classid=1, direct_action=True)
        except NetlinkError as e:
            if made_qdisc:
                try:
                    ipr.tc("del", "clsact", ifindex)
                except NetlinkError:
                    pass
            reason = e.args[1] if len(e.args) > 1 else str(e)
            raise AttachError(f"cannot attach the tc program to {dev} {direction} "
                              f"(clsact): {reason}") from None
    return ClsactFilter(dev, ifindex, netns, direction, prog_id, prio, made_qdisc)
