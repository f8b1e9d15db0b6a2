"""Packet verdicts: what an XDP or tc program's return value means.

Owns the two action enums over the kernel's numbers (`compiler/bpf/uapi.py`) —
`XdpAction` (`enum xdp_action`) and `TcAction` (`TC_ACT_*`; tcx links read the
same numbers as `TCX_NEXT`/`TCX_PASS`/`TCX_DROP`/`TCX_REDIRECT`) — the conversion of a raw
BPF_PROG_TEST_RUN `retval` (an unsigned 32-bit field) into one of them, and
the names a user sees ("XDP_DROP", "TC_ACT_SHOT"). Does not own what a Lua
`return true/false` compiles to (compiler/hooks/function.py chooses the numbers from
these enums) or running programs (runtime/load.py).
"""
from __future__ import annotations

import enum

from luabpf.compiler.bpf import uapi
from luabpf.compiler.bpf.uapi import ProgType

__all__ = ["XdpAction", "TcAction", "action_for", "verdict_name", "is_drop", "is_pass",
           "hook_of_prog_type"]


class XdpAction(enum.IntEnum):
    """enum xdp_action."""
    ABORTED = uapi.XDP_ABORTED
    DROP = uapi.XDP_DROP
    PASS = uapi.XDP_PASS
    TX = uapi.XDP_TX
    REDIRECT = uapi.XDP_REDIRECT

    @property
    def kernel_name(self) -> str:
        return f"XDP_{self.name}"


class TcAction(enum.IntEnum):
    """TC_ACT_* of include/uapi/linux/pkt_cls.h (cls_bpf in direct-action
    mode and tcx both return these; tcx calls -1 TCX_NEXT, 0 TCX_PASS,
    2 TCX_DROP, 7 TCX_REDIRECT)."""
    UNSPEC = uapi.TC_ACT_UNSPEC
    OK = uapi.TC_ACT_OK
    RECLASSIFY = uapi.TC_ACT_RECLASSIFY
    SHOT = uapi.TC_ACT_SHOT
    PIPE = uapi.TC_ACT_PIPE
    STOLEN = uapi.TC_ACT_STOLEN
    QUEUED = uapi.TC_ACT_QUEUED
    REPEAT = uapi.TC_ACT_REPEAT
    REDIRECT = uapi.TC_ACT_REDIRECT
    TRAP = uapi.TC_ACT_TRAP

    @property
    def kernel_name(self) -> str:
        return f"TC_ACT_{self.name}"


_ENUMS = {"xdp": XdpAction, "tc": TcAction}
_HOOK_OF_TYPE = {ProgType.XDP: "xdp", ProgType.SCHED_CLS: "tc"}


def hook_of_prog_type(prog_type: int) -> str:
    """"xdp" or "tc" for a packet program type; ValueError for any other."""
    try:
        return _HOOK_OF_TYPE[int(prog_type)]
    except KeyError:
        raise ValueError(f"program type {prog_type} is not a packet filter (XDP or SCHED_CLS)") from None


def _hook(hook) -> str:
    if isinstance(hook, str):
        if hook not in _ENUMS:
            raise ValueError(f"unknown packet hook {hook!r} (xdp or tc)")
        return hook
    return hook_of_prog_type(hook)


def action_for(hook: str | int, retval: int) -> XdpAction | TcAction | int:
    """The action a program of `hook` ("xdp", "tc", or a program type number)
    returned. `retval` may be the kernel's unsigned 32-bit field (0xffffffff
    is TC_ACT_UNSPEC). A number the enum does not know comes back as a plain
    int: the kernel treats unknown XDP actions as aborted, unknown tc
    actions as TC_ACT_OK, and the caller decides how to show it."""
    enum_cls = _ENUMS[_hook(hook)]
    value = int(retval) & 0xFFFFFFFF
    if value >= 1 << 31:
        value -= 1 << 32
    try:
        return enum_cls(value)
    except ValueError:
        return value


def verdict_name(hook: str | int, retval) -> str:
    """"XDP_DROP", "TC_ACT_SHOT", … for a return value (an enum member or an
    int); an unknown number is named "XDP_<n>?" / "TC_ACT_<n>?"."""
    if isinstance(retval, (XdpAction, TcAction)):
        return retval.kernel_name
    action = action_for(hook, retval)
    if isinstance(action, (XdpAction, TcAction)):
        return action.kernel_name
    prefix = "XDP_" if _hook(hook) == "xdp" else "TC_ACT_"
    return f"{prefix}{action}?"


def is_drop(action) -> bool:
    """True for the verdicts that discard the packet (XDP_DROP, XDP_ABORTED,
    TC_ACT_SHOT, TC_ACT_STOLEN, TC_ACT_TRAP)."""
    if isinstance(action, XdpAction):
        return action in (XdpAction.DROP, XdpAction.ABORTED)
    if isinstance(action, TcAction):
        return action in (TcAction.SHOT, TcAction.STOLEN, TcAction.TRAP)
    return False


def is_pass(action) -> bool:
    """True for the verdicts that let the packet continue up (or out of) the
    stack unchanged: XDP_PASS, TC_ACT_OK, TC_ACT_UNSPEC (tcx: next program)."""
    if isinstance(action, XdpAction):
        return action == XdpAction.PASS
    if isinstance(action, TcAction):
        return action in (TcAction.OK, TcAction.UNSPEC, TcAction.PIPE)
    return False
