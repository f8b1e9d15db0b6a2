"""Issue 3 end to end: the paper's SSH filter (Figure 2) on real traffic.

Two network namespaces joined by a veth pair (made and removed by the `veth`
fixture). A TCP server in namespace b sends an SSH identification string on
connect; a client in namespace a reads it. With the filter attached on tc
egress of the server's veth, or on XDP of the client's veth, the vulnerable
banner ("SSH-2.0-OpenSSH_6.4") never arrives and a safe one does; once the
filter is detached the vulnerable banner arrives again. Afterwards nothing is
left: no namespace, no device, no link, no program.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

import luabpf
from luabpf.runtime import kernel
from luabpf.runtime.attach import Target, attach
from luabpf.runtime.attach import link as bpflink

from cli_runner import LUABPF_COMMAND, ROOT

pytestmark = pytest.mark.kernel

# The paper's Figure 2 as examples/ssh_filter.lua has it (see the note there on [^-%G]).
with open(os.path.join(ROOT, "examples", "ssh_filter.lua"), encoding="utf-8") as _f:
    SSH_FILTER = _f.read()
VULNERABLE = b"SSH-2.0-OpenSSH_6.4\r\n"
SAFE = b"SSH-2.0-OpenSSH_9.6\r\n"


def placement(net, where: str):
    """(hook, namespace end, target) for "tc-egress" (the server's veth) or
    "xdp" (the client's veth)."""
    if where == "tc-egress":
        return "tc", net.b, Target("tc", net.b.dev, "egress")
    return "xdp", net.a, Target("xdp", net.a.dev)


def run_count(fd: int) -> int:
    return kernel.prog_info(fd)["run_cnt"]


@pytest.mark.parametrize("where", ["tc-egress", "xdp"])
def test_ssh_filter_drops_the_vulnerable_banner(veth, banner_exchange, where):
    hook, end, target = placement(veth, where)
    prog = luabpf.compile(SSH_FILTER, "ssh_filter.lua", hook=hook)
    with prog.load() as loaded, kernel.enable_stats():
        prog_id = kernel.prog_info(loaded.fd)["id"]
        with attach(loaded.fd, target, netns=end.netns) as link:
            assert link.mode == "link", "BPF links are expected on this kernel"
            assert banner_exchange(veth, VULNERABLE, timeout=1.5) == b""
            assert banner_exchange(veth, SAFE) == SAFE
            assert run_count(loaded.fd) > 0
            assert loaded.describe_errors() == []
        link_id = link.link_id
        assert not bpflink.link_exists(link_id)
        assert banner_exchange(veth, VULNERABLE) == VULNERABLE     # the filter was the cause
    assert prog_id not in set(kernel.prog_ids())


@pytest.mark.parametrize("where", ["tc-egress", "xdp"])
def test_ssh_filter_with_luabpf_run(tmp_path, veth, banner_exchange, where):
    hook, end, _ = placement(veth, where)
    script = tmp_path / "ssh_filter.lua"
    script.write_text(SSH_FILTER)
    flag = ["--tc", f"{end.dev}:egress"] if hook == "tc" else ["--xdp", end.dev]
    proc = subprocess.Popen(
        [*LUABPF_COMMAND, "run", str(script), *flag, "--netns", end.netns, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert line, proc.communicate(timeout=10)[1]
        attached = json.loads(line)
        assert attached["event"] == "attached" and attached["mode"] == "link"
        assert banner_exchange(veth, VULNERABLE, timeout=1.5) == b""
        assert banner_exchange(veth, SAFE) == SAFE
        proc.send_signal(signal.SIGTERM)
        out, errs = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, errs
    assert "Traceback" not in errs
    events = [json.loads(l) for l in out.splitlines()]
    assert events[-1]["event"] == "detached" and events[-1]["reason"] == "SIGTERM"
    assert events[-1]["run_cnt"] > 0 and events[-1]["errors"] == []
    assert not bpflink.link_exists(attached["link_id"])
    assert attached["prog_id"] not in set(kernel.prog_ids())
    assert banner_exchange(veth, VULNERABLE) == VULNERABLE


def test_the_pair_and_everything_on_it_are_removed(banner_exchange):
    from luabpf.runtime.netns import VethPair, namespaces
    prog = luabpf.compile(SSH_FILTER, "ssh_filter.lua", hook="xdp")
    with prog.load() as loaded:
        with pytest.raises(RuntimeError, match="on purpose"):
            with VethPair() as net:
                link = attach(loaded.fd, Target("xdp", net.a.dev), netns=net.a.netns)
                assert banner_exchange(net, SAFE) == SAFE
                raise RuntimeError("on purpose: an error inside the block")
        # the namespace went away with the device, and the device with its link
        assert not any(net.token in n for n in namespaces())
        devices = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
        assert net.token not in devices
        info = kernel.link_info(link.link_fd)
        assert info.get("ifindex", 0) == 0          # the device is gone: the link holds nothing
        link.detach()
        assert not bpflink.link_exists(info["id"])
