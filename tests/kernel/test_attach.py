"""Attaching and detaching in the kernel (runtime/attach/): XDP and tc, as BPF links
and through the netlink / clsact fallbacks, leave nothing behind; a `luabpf run`
process killed with SIGKILL takes its program off the device (link semantics).

The programs attached here are written in BPF assembly, so these tests judge the
attach layer alone: they drop a TCP segment that carries data from source port
2222 (the handshake passes), and pass everything else.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from luabpf.compiler.bpf import asm, encode
from luabpf.compiler.bpf.uapi import AttachType, LinkType, ProgType
from luabpf.runtime import kernel, pins
from luabpf.runtime.attach import AttachError, Target, attach
from luabpf.runtime.attach import link as bpflink
from luabpf.runtime.attach.tc import clsact_filters, has_clsact
from luabpf.runtime.attach.xdp import xdp_prog_id

from cli_runner import DROP_2222, LUABPF_COMMAND, ROOT, run_luabpf

pytestmark = pytest.mark.kernel

# (data, data_end) offsets in the context, verdicts (drop, pass) per hook:
# struct xdp_md {data, data_end}; struct __sk_buff {…, data @76, data_end @80}.
HOOKS = {"xdp": (ProgType.XDP, 0, 4, 1, 2), "tc": (ProgType.SCHED_CLS, 76, 80, 2, 0)}

DROP_2222_WITH_DATA = """
    r2 = *(u32 *)(r1 +{data})
    r3 = *(u32 *)(r1 +{end})
    r4 = r2
    r4 += 54                    ; Ethernet + IPv4 without options + TCP
    if r4 > r3 goto Lpass
    r5 = *(u16 *)(r2 +12)
    if r5 != 0x8 goto Lpass     ; ethertype 0x0800, read little-endian
    r5 = *(u8 *)(r2 +14)
    if r5 != 0x45 goto Lpass
    r5 = *(u8 *)(r2 +23)
    if r5 != 6 goto Lpass       ; TCP
    r5 = *(u16 *)(r2 +34)
    if r5 != 0xae08 goto Lpass  ; source port 2222, network order
    r6 = *(u16 *)(r2 +16)
    r6 = be16 r6                ; IP total length
    r7 = *(u8 *)(r2 +46)
    r7 >>= 4
    r7 <<= 2
    r7 += 20                    ; IP header + TCP header
    if r6 <= r7 goto Lpass      ; no payload: the handshake
    r0 = {drop}
    exit
Lpass:
    r0 = {ok}
    exit
"""


def load_asm(hook: str) -> kernel.Fd:
    prog_type, data, end, drop, ok = HOOKS[hook]
    text = DROP_2222_WITH_DATA.format(data=data, end=end, drop=drop, ok=ok)
    return kernel.load_with_log(prog_type, encode.encode(asm.assemble(text)), name="drop2222")


@pytest.fixture
def xdp_prog():
    with load_asm("xdp") as fd:
        yield fd


@pytest.fixture
def tc_prog():
    with load_asm("tc") as fd:
        yield fd


def ip_link(end) -> str:
    return end.run(["ip", "-d", "link", "show", "dev", end.dev], check=True).stdout


def assert_gone(link_id: int | None, prog_id: int) -> None:
    if link_id is not None:
        assert not bpflink.link_exists(link_id)
    assert not bpflink.links_of_prog(prog_id)


# ---- XDP --------------------------------------------------------------------------

@pytest.mark.parametrize("use_link,mode", [(None, "link"), (False, "netlink")])
def test_xdp_attach_and_detach_leave_nothing(veth, xdp_prog, use_link, mode):
    end = veth.a
    with attach(xdp_prog, Target("xdp", end.dev), netns=end.netns, use_link=use_link) as l:
        assert l.mode == mode and l.attached
        assert xdp_prog_id(end.dev, end.netns) == l.prog_id
        assert f"prog/xdp id {l.prog_id}" in ip_link(end)
        if mode == "link":
            assert bpflink.link_exists(l.link_id)
            assert [i["id"] for i in bpflink.links_of_prog(l.prog_id)] == [l.link_id]
    assert not l.attached
    assert xdp_prog_id(end.dev, end.netns) is None
    assert "prog/xdp" not in ip_link(end)
    assert_gone(l.link_id, l.prog_id)
    l.detach()                                          # a second detach does nothing


def test_xdp_attach_does_not_replace_another_program(veth, xdp_prog):
    end = veth.a
    with attach(xdp_prog, Target("xdp", end.dev), netns=end.netns, use_link=False):
        with pytest.raises(AttachError, match="already has an XDP program"):
            attach(xdp_prog, Target("xdp", end.dev), netns=end.netns)
    assert xdp_prog_id(end.dev, end.netns) is None


def test_no_such_device(veth, xdp_prog, tc_prog):
    with pytest.raises(AttachError, match="no such network interface"):
        attach(xdp_prog, Target("xdp", "nosuchdev0"), netns=veth.a.netns)
    with pytest.raises(AttachError, match="no such network interface"):
        attach(tc_prog, Target("tc", "nosuchdev0", "egress"), netns=veth.a.netns)


# ---- tc ---------------------------------------------------------------------------

@pytest.mark.parametrize("direction", ["ingress", "egress"])
@pytest.mark.parametrize("use_link,mode", [(None, "link"), (False, "clsact")])
def test_tc_attach_and_detach_leave_nothing(veth, tc_prog, direction, use_link, mode):
    end = veth.b
    with attach(tc_prog, Target("tc", end.dev, direction), netns=end.netns,
                use_link=use_link) as l:
        assert l.mode == mode and l.direction == direction
        if mode == "link":
            info = kernel.link_info(l.link_fd)
            assert info["type"] == LinkType.TCX
            assert info["attach_type"] == AttachType[f"TCX_{direction.upper()}"]
            assert not has_clsact(end.dev, end.netns)
        else:
            assert has_clsact(end.dev, end.netns)
            assert [f["name"] for f in clsact_filters(end.dev, direction, end.netns)] == ["luabpf"]
    assert not has_clsact(end.dev, end.netns)
    assert clsact_filters(end.dev, direction, end.netns) == []
    assert_gone(l.link_id, l.prog_id)


def test_clsact_fallback_keeps_a_qdisc_it_did_not_make(veth, tc_prog):
    end = veth.b
    end.run(["tc", "qdisc", "add", "dev", end.dev, "clsact"], check=True)
    with attach(tc_prog, Target("tc", end.dev, "egress"), netns=end.netns, use_link=False):
        assert len(clsact_filters(end.dev, "egress", end.netns)) == 1
    assert has_clsact(end.dev, end.netns)
    assert clsact_filters(end.dev, "egress", end.netns) == []


# ---- the attached programs act on traffic -----------------------------------------------

@pytest.mark.parametrize("hook,use_link", [("xdp", None), ("xdp", False), ("tc", None), ("tc", False)])
def test_attached_program_drops_the_traffic_it_should(veth, banner_exchange, hook, use_link):
    # XDP on the client's receive path; tc on the server's send path.
    end, target = (veth.a, Target("xdp", veth.a.dev)) if hook == "xdp" else \
        (veth.b, Target("tc", veth.b.dev, "egress"))
    with load_asm(hook) as fd, attach(fd, target, netns=end.netns, use_link=use_link):
        assert banner_exchange(veth, b"hello 2222\r\n", port=2222, timeout=1.0) == b""
        assert banner_exchange(veth, b"hello 2223\r\n", port=2223) == b"hello 2223\r\n"
    assert banner_exchange(veth, b"hello again\r\n", port=2222) == b"hello again\r\n"


# ---- `luabpf run` killed: link semantics ------------------------------------------------

def start_run(tmp_path, end, *target) -> tuple[subprocess.Popen, dict]:
    script = tmp_path / "drop2222.lua"
    script.write_text(DROP_2222)
    proc = subprocess.Popen(
        [*LUABPF_COMMAND, "run", str(script), *target, "--netns", end.netns, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail(f"luabpf run did not attach: {proc.communicate(timeout=10)[1]}")
    event = json.loads(line)
    assert event["event"] == "attached", event
    return proc, event


@pytest.mark.parametrize("hook", ["xdp", "tc"])
def test_sigkilled_run_leaves_nothing_attached(tmp_path, veth, hook):
    end = veth.a if hook == "xdp" else veth.b
    target = ["--xdp", end.dev] if hook == "xdp" else ["--tc", f"{end.dev}:egress"]
    proc, event = start_run(tmp_path, end, *target)
    try:
        assert event["mode"] == "link"
        assert bpflink.link_exists(event["link_id"])
        if hook == "xdp":
            assert f"prog/xdp id {event['prog_id']}" in ip_link(end)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    assert bpflink.links_gone([event["link_id"]])    # released as the killed process's fds close
    assert "prog/xdp" not in ip_link(end)
    # the pins outlive the process; `luabpf ls` calls them stale and the next run removes them
    listed = [json.loads(l) for l in run_luabpf("ls", "--json").stdout.splitlines()]
    assert [r["alive"] for r in listed if r["name"] == "drop2222"] == [False]
    assert event["prog_id"] in set(kernel.prog_ids())           # held by its pin only
    again, _ = start_run(tmp_path, end, *target)
    try:
        again.send_signal(signal.SIGTERM)
        again.wait(15)
    finally:
        if again.poll() is None:
            again.kill()
        again.communicate(timeout=10)
    assert event["prog_id"] not in set(kernel.prog_ids())
    assert not os.path.exists(os.path.join(pins.root(), "drop2222"))


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "duration"])
def test_run_detaches_on_signals_and_after_duration(tmp_path, veth, how):
    end = veth.a
    extra = ["--duration", "0.6"] if how == "duration" else []
    proc, event = start_run(tmp_path, end, "--xdp", end.dev, *extra)
    try:
        if how != "duration":
            proc.send_signal(getattr(signal, how))
        out, errs = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, errs
    assert "Traceback" not in errs
    last = json.loads(out.strip().splitlines()[-1])
    assert last["event"] == "detached"
    assert last["reason"] == {"SIGINT": "interrupted"}.get(how, how)
    assert_gone(event["link_id"], event["prog_id"])
    assert "prog/xdp" not in ip_link(end)


def test_run_stops_when_the_device_goes_away(tmp_path, veth):
    end = veth.a
    proc, event = start_run(tmp_path, end, "--tc", end.dev)
    try:
        end.run(["ip", "link", "del", end.dev], check=True)
        out, errs = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1 and "Traceback" not in errs
    last = json.loads(out.strip().splitlines()[-1])
    assert last["event"] == "detached" and last["reason"] == "device gone"
    assert_gone(event["link_id"], event["prog_id"])
