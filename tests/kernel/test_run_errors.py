"""Issue 9: `luabpf run` names the real cause when it cannot attach, and leaves other
runs' stale pins alone (`luabpf ls --prune` removes them).

- a device another `luabpf run` holds: "attached by luabpf run 'NAME', pid N", not an
  `ip link set … xdp off` hint (which cannot remove a BPF link's program);
- a device held by another process's BPF link, or attached by netlink: what removes it;
- a device that is in another network namespace: which one has it, as `--netns` takes it
  (a named namespace, or a process's), and that hint works;
- stale pins: `run` removes its own NAME's only and says how to prune the others.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import time

import pytest

from luabpf.runtime import pins

from cli_runner import LUABPF_COMMAND, ROOT, run_luabpf

pytestmark = pytest.mark.kernel

FILTER = os.path.join(ROOT, "examples", "udp_threshold.lua")
TRACEPOINTS = os.path.join(ROOT, "examples", "idle_count.lua")


class Background:
    """`luabpf run … --json` in the background, its "attached" line read."""

    def __init__(self, *argv):
        self.proc = subprocess.Popen([*LUABPF_COMMAND, "run", *argv, "--json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=ROOT)
        line = self.proc.stdout.readline()
        assert line, self.stop()
        self.attached = json.loads(line)
        assert self.attached["event"] == "attached", self.attached

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.stop()

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        _, errs = self.proc.communicate(timeout=10)
        return errs


def one_line(r) -> str:
    lines = [l for l in r.stderr.splitlines() if l.strip() and "stale pins of" not in l]
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


# ---- who holds the device ---------------------------------------------------------------

def test_a_device_another_run_holds_names_that_run(veth):
    name = f"hold-{veth.token}"
    first = Background(FILTER, "--xdp", veth.b.dev, "--netns", veth.b.netns, "--name", name)
    try:
        r = run_luabpf("run", FILTER, "--xdp", veth.b.dev, "--netns", veth.b.netns,
                       "--name", f"second-{veth.token}", "--duration", "0.2")
        line = one_line(r)
        assert line == (f"luabpf: {veth.b.dev} (network namespace {veth.b.netns}) already has an "
                        f"XDP program: attached by luabpf run '{name}', pid {first.proc.pid} (see "
                        f"`luabpf ls`); stop that run first, or attach to another device"), line
        assert "xdp off" not in r.stderr
    finally:
        first.stop()


@pytest.mark.parametrize("use_link", [True, False])
def test_a_device_another_process_holds_says_what_removes_it(veth, use_link):
    import luabpf
    from luabpf.runtime.attach import Target, attach
    prog = luabpf.compile("function filter(hdr, pld)\n  return true\nend\n", "p.lua", "xdp")
    with prog.load() as loaded, attach(loaded.fd, Target("xdp", veth.a.dev), netns=veth.a.netns,
                                       use_link=use_link) as link:
        r = run_luabpf("run", FILTER, "--xdp", veth.a.dev, "--netns", veth.a.netns,
                       "--name", f"other-{veth.token}", "--duration", "0.2")
        line = one_line(r)
        head = (f"luabpf: {veth.a.dev} (network namespace {veth.a.netns}) already has an XDP "
                f"program (id {link.prog_id})")
        if use_link:
            assert line == (f"{head}, held by BPF link {link.link_id} of another process; luabpf "
                            f"does not replace it (it goes when that process exits, or with: "
                            f"bpftool link detach id {link.link_id})"), line
        else:
            assert line == (f"{head}; luabpf does not replace it (remove it with: ip link set dev "
                            f"{veth.a.dev} xdp off)"), line


# ---- which namespace has the device -------------------------------------------------------

def test_a_device_in_another_named_namespace_says_which(veth):
    r = run_luabpf("run", FILTER, "--xdp", veth.a.dev, "--duration", "0.2",
                   "--name", f"ns-{veth.token}")
    assert one_line(r) == (f"luabpf: {veth.a.dev}: no such network interface in this network "
                           f"namespace; network namespace '{veth.a.netns}' has one (--netns "
                           f"{veth.a.netns})")
    r = run_luabpf("run", FILTER, "--tc", veth.a.dev, "--netns", veth.b.netns, "--duration", "0.2",
                   "--name", f"ns-{veth.token}")
    assert one_line(r) == (f"luabpf: {veth.a.dev}: no such network interface in network namespace "
                           f"{veth.b.netns}; network namespace '{veth.a.netns}' has one (--netns "
                           f"{veth.a.netns})")


def test_a_device_of_this_namespace_asked_in_another_says_leave_out_netns(veth):
    dev = f"lbr{veth.token}"
    subprocess.run(["ip", "link", "add", dev, "type", "veth", "peer", "name", dev + "p"], check=True)
    try:
        r = run_luabpf("run", FILTER, "--xdp", dev, "--netns", veth.b.netns, "--duration", "0.2",
                       "--name", f"own-{veth.token}")
        assert one_line(r) == (f"luabpf: {dev}: no such network interface in network namespace "
                               f"{veth.b.netns}; this process's own namespace has one (leave out "
                               f"--netns)")
    finally:
        subprocess.run(["ip", "link", "del", dev], check=False)


def test_a_device_in_a_process_namespace_says_which_and_the_hint_works():
    dev = f"lbp{secrets.token_hex(3)}"
    holder = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        ns = f"/proc/{holder.pid}/ns/net"
        while os.readlink(ns) == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline, "unshare did not make a namespace"
            time.sleep(0.02)
        subprocess.run(["nsenter", "-t", str(holder.pid), "-n", "ip", "link", "add", dev, "type",
                        "veth", "peer", "name", dev + "p"], check=True)
        name = f"pns-{dev}"
        r = run_luabpf("run", FILTER, "--xdp", dev, "--duration", "0.2", "--name", name)
        assert one_line(r) == (f"luabpf: {dev}: no such network interface in this network "
                               f"namespace; the namespace of pid {holder.pid} (sleep) has one "
                               f"(--netns {ns})")
        ok = run_luabpf("run", FILTER, "--xdp", dev, "--netns", ns, "--duration", "0.2",
                        "--name", name)
        assert ok.returncode == 0, ok.stderr
        assert f"xdp on {dev} in netns {ns}" in ok.stderr
    finally:
        holder.kill()
        holder.wait(10)


def test_no_such_device_anywhere_says_only_that():
    r = run_luabpf("run", FILTER, "--xdp", "nosuchdev9", "--duration", "0.2")
    assert one_line(r) == "luabpf: nosuchdev9: no such network interface in this network namespace"


# ---- stale pins ---------------------------------------------------------------------------

def stale(name: str) -> None:
    """A run of NAME killed with SIGKILL: its pins stay."""
    Background(TRACEPOINTS, "--name", name).kill()
    assert os.path.isdir(os.path.join(pins.root(), name))


def test_run_removes_its_own_stale_pins_only_and_ls_prune_the_others():
    token = secrets.token_hex(3)
    mine, other = f"mine-{token}", f"other-{token}"
    try:
        stale(mine)
        stale(other)
        r = run_luabpf("run", TRACEPOINTS, "--name", mine, "--duration", "0.2")
        assert r.returncode == 0, r.stderr
        assert "luabpf: removed the pins of " + mine in r.stderr
        assert os.path.isdir(os.path.join(pins.root(), other))         # not its to remove
        note = next(l for l in r.stderr.splitlines() if "stale pins of" in l)
        assert other in note and note.endswith("remain (their runs are gone); `luabpf ls --prune` "
                                               "removes them")
        rows = [json.loads(l) for l in run_luabpf("ls", "--json").stdout.splitlines()]
        assert [r["alive"] for r in rows if r["name"] == other] == [False]
        listed = run_luabpf("ls")
        assert listed.returncode == 0
        assert "stale run" in listed.stdout and "(the process is gone): `luabpf ls --prune` " \
            "removes their pins" in listed.stdout
        pruned = run_luabpf("ls", "--prune", "--json")
        assert pruned.returncode == 0, pruned.stderr
        events = [json.loads(l) for l in pruned.stdout.splitlines()]
        assert {"event": "pruned", "name": other, "path": os.path.join(pins.root(), other),
                "pid": events[[e.get("name") for e in events].index(other)]["pid"]} in events
        assert not os.path.exists(os.path.join(pins.root(), other))
        assert not any(e.get("name") == other and "event" not in e for e in events)
    finally:
        for name in (mine, other):
            pins.clean_stale(name)


def test_a_killed_policys_pins_go_with_the_next_policy_on_its_tree_or_ls_prune(tmp_path):
    from luabpf.runtime.attach.perf import online_cpus
    from luabpf.runtime.cpufreq import make_simulated
    cpus = online_cpus()
    freqs = (800000, 1600000, 2400000)
    token = secrets.token_hex(3)
    policy = os.path.join(ROOT, "examples", "ondemand.lua")
    trees = []
    for i in range(2):
        t = make_simulated(str(tmp_path / f"sys{i}"), cpus=cpus, freqs=freqs, temps=[40] * len(cpus))
        for cpu in cpus:
            t.simulate_cur(cpu, freqs[-1])
        trees.append(t)
    first, second = f"pol1-{token}", f"pol2-{token}"

    def governors(t):
        return {t.governor(cpu) for cpu in t.cpus()}

    try:
        Background(policy, "--cpufreq", "--sysfs-root", trees[0].root, "--name", first).kill()
        Background(policy, "--cpufreq", "--sysfs-root", trees[1].root, "--name", second).kill()
        assert governors(trees[0]) == governors(trees[1]) == {"userspace"}
        # a tracepoint run leaves both alone
        r = run_luabpf("run", TRACEPOINTS, "--name", f"tp-{token}", "--duration", "0.2")
        assert r.returncode == 0, r.stderr
        assert all(os.path.isdir(os.path.join(pins.root(), n)) for n in (first, second))
        assert governors(trees[0]) == {"userspace"}
        # a policy on tree 0 (another NAME) takes over the first's CPUs: restores, removes
        r = run_luabpf("run", policy, "--cpufreq", "--sysfs-root", trees[0].root, "--name",
                       f"pol3-{token}", "--duration", "0.3")
        assert r.returncode == 0, r.stderr
        assert f"luabpf: removed the pins of {first} (pid " in r.stderr
        assert not os.path.exists(os.path.join(pins.root(), first))
        assert governors(trees[0]) == {"schedutil"}
        assert os.path.isdir(os.path.join(pins.root(), second))     # another tree's
        assert governors(trees[1]) == {"userspace"}
        pruned = run_luabpf("ls", "--prune")
        assert f"removed the pins of {second} (pid " in pruned.stdout, pruned.stderr
        assert governors(trees[1]) == {"schedutil"}
    finally:
        for name in (first, second):
            pins.clean_stale(name)
