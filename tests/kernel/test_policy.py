"""Issue 5 end to end: CPU-frequency policies in the kernel, applied to a simulated tree.

`luabpf run FILE --cpufreq --sysfs-root DIR` runs the policy on this machine's CPUs
(a per-CPU timer in the kernel); the load it sees is the real one, measured by its
sched_switch companion: the test leaves the CPUs idle or keeps them busy with
spinning processes pinned to each CPU. The tree (runtime.cpufreq.make_simulated)
has no driver, so luabpf plays it: scaling_cur_freq follows what it writes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from luabpf import api
from luabpf.runtime.attach.perf import attach_tracepoint, online_cpus
from luabpf.runtime.cpufreq import SysfsTree, make_simulated
from luabpf.runtime.load import LoadedScript

from cli_runner import LUABPF_COMMAND, ROOT, run_luabpf

pytestmark = pytest.mark.kernel

FREQS = (800000, 1200000, 1600000, 2000000, 2400000)
LOW, HIGH = FREQS[0], FREQS[-1]


def example(name: str) -> str:
    return os.path.join(ROOT, "examples", name)


def tree(tmp_path, start: int, temp: int = 40) -> SysfsTree:
    cpus = online_cpus()
    t = make_simulated(str(tmp_path / "sys"), cpus=cpus, freqs=FREQS, temps=[temp] * len(cpus))
    for cpu in cpus:
        t.simulate_cur(cpu, start)
    return t


class Spinners:
    """One busy process pinned to each CPU, for as long as the `with` lasts."""

    def __enter__(self):
        self.procs = [subprocess.Popen(
            [sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"])
            for cpu in online_cpus()]
        time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait(10)


def run_policy(script: str, t: SysfsTree, until, *extra, during=None, limit: float = 60.0) -> list[dict]:
    """`luabpf run SCRIPT --cpufreq` on tree t until `until()` holds (polled; at most
    `limit` seconds: on this VM an idle vCPU's clock event fires about once a second
    instead of every 20 ms, so an idle CPU's three steps down can take seconds, and other
    work can make a CPU briefly busy), then SIGTERM; its JSON lines. `during`, if given,
    is called once the policy is attached."""
    proc = subprocess.Popen(
        [*LUABPF_COMMAND, "run", script, "--cpufreq", "--sysfs-root", t.root, "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        first = proc.stdout.readline()
        assert first, proc.communicate(timeout=30)[1]
        if during is not None:
            during(json.loads(first))
        deadline = time.monotonic() + limit
        while not until() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)                       # a few more intervals: a stable state stays
        proc.terminate()
        out, errs = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, errs
    assert "Traceback" not in errs
    return [json.loads(first)] + [json.loads(line) for line in out.splitlines()]


def final_freqs(t: SysfsTree) -> set[int]:
    return {t.cur(cpu) for cpu in t.cpus()}


def governors(t: SysfsTree) -> set[str]:
    return {t.governor(cpu) for cpu in t.cpus()}


def test_idle_cpus_step_down_to_the_minimum(tmp_path):
    """Every CPU at the minimum at once, reached by steps down. Not asserted: the state
    after that moment. luabpf's own work (its reads each second, its exit) keeps a CPU
    busy for an interval now and then, and ondemand then rightly sends it to the maximum
    (measured: CPU 0 jumps up and steps down again about once a second)."""
    t = tree(tmp_path, HIGH)
    seen: list[set] = []

    def all_low() -> bool:
        seen.append(final_freqs(t))
        return seen[-1] == {LOW}

    lines = run_policy(example("ondemand.lua"), t, all_low)
    assert seen[-1] == {LOW}, seen[-5:]
    assert governors(t) == {"schedutil"}                       # put back at exit
    decisions = [l for l in lines if l["event"] == "decision"]
    for cpu in t.cpus():                                 # each went down by '<=' steps to LOW
        steps = [d for d in decisions if d["cpu"] == cpu and d["relation"] == "<="]
        assert any(d["resolved"] == LOW for d in steps), (cpu, decisions)
    last = lines[-1]
    assert last["event"] == "detached" and last["errors"] == []
    assert last["programs"]["throttle"]["run_cnt"] > 0


def test_busy_cpus_go_to_the_maximum(tmp_path):
    t = tree(tmp_path, LOW)
    with Spinners():
        lines = run_policy(example("ondemand.lua"), t, lambda: final_freqs(t) == {HIGH})
    assert final_freqs(t) == {HIGH}
    assert governors(t) == {"schedutil"}
    assert any(d["event"] == "decision" and d["relation"] == ">=" for d in lines)
    loads = [c["load"] for l in lines if l["event"] in ("stats", "detached") for c in l["cpus"].values()]
    assert loads and max(loads) > 80


def test_a_hot_cpu_steps_down_whatever_its_load(tmp_path):
    t = tree(tmp_path, HIGH, temp=100)
    with Spinners():
        lines = run_policy(example("overheat.lua"), t, lambda: final_freqs(t) == {LOW})
    assert final_freqs(t) == {LOW}
    assert all(c["temp_c"] == 100 for c in lines[-1]["cpus"].values())
    assert governors(t) == {"schedutil"}


def test_luabpf_set_retunes_a_running_policy(tmp_path):
    """Busy and at 60 °C the paper's policy holds the maximum; lowering `overheated` to 50
    while it runs makes it step down."""
    t = tree(tmp_path, LOW, temp=60)
    seen = {}

    def retune(attached):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and final_freqs(t) != {HIGH}:
            time.sleep(0.05)
        seen["before"] = final_freqs(t)
        r = run_luabpf("set", "overheat", "overheated=50")
        assert r.returncode == 0, r.stderr

    with Spinners():
        run_policy(example("overheat.lua"), t, lambda: final_freqs(t) == {LOW}, during=retune)
    assert seen["before"] == {HIGH}
    assert final_freqs(t) == {LOW}


def test_dry_run_decides_but_writes_nothing(tmp_path):
    t = tree(tmp_path, HIGH)
    before = {cpu: (t.cur(cpu), t.governor(cpu)) for cpu in t.cpus()}
    lines = run_policy(example("ondemand.lua"), t, lambda: False, "--dry-run", limit=2.0)
    assert {cpu: (t.cur(cpu), t.governor(cpu)) for cpu in t.cpus()} == before
    decisions = [l for l in lines if l["event"] == "decision"]
    assert decisions and all(not d["written"] and d["reason"] == "dry run" for d in decisions)


def test_tracepoint_args_are_decoded_from_real_events():
    """examples/idle_count.lua on sched:sched_switch: the threads this test runs are
    switched to (their tids are keys of `switches`), and CPUs go idle and come back."""
    with open(example("idle_count.lua")) as f:
        source = f.read()
    hooks = [api.tracepoint_hook("sched", "sched_switch")]
    from luabpf.compiler.program import compile_script
    programs = compile_script(source, "idle_count.lua", hooks)
    tids = []

    def sleeper():
        tids.append(threading.get_native_id())
        for _ in range(50):
            time.sleep(0.002)

    with LoadedScript(programs) as loaded:
        with attach_tracepoint(loaded.fds[0], "sched", "sched_switch"):
            threads = [threading.Thread(target=sleeper) for _ in range(3)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        switches = loaded.maps["switches"]
        for tid in tids:
            assert switches.get(tid, 0) >= 10, (tid, dict(switches))
        assert loaded.maps["to_idle"][0] > 0 and loaded.maps["from_idle"][0] > 0
        assert loaded.describe_errors() == []


def test_a_missing_tree_is_one_sentence(tmp_path):
    r = run_luabpf("run", example("ondemand.lua"), "--cpufreq",
                   "--sysfs-root", str(tmp_path / "nope"), "--duration", "0.5")
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert str(tmp_path / "nope") in lines[0] and "Traceback" not in r.stderr


def test_a_killed_policy_detaches_and_the_next_run_puts_its_governors_back(tmp_path):
    from luabpf.runtime.attach import link as bpflink
    t = tree(tmp_path, HIGH)
    proc = subprocess.Popen(
        [*LUABPF_COMMAND, "run", example("ondemand.lua"), "--cpufreq", "--sysfs-root", t.root,
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        attached = json.loads(proc.stdout.readline())
        assert attached["event"] == "attached" and attached["hook"] == "cpufreq"
        link_ids = [i for link in attached["links"] for i in link["link_ids"]]
        assert link_ids and all(bpflink.link_exists(i) for i in link_ids)
        assert governors(t) == {"userspace"}
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    assert bpflink.links_gone(link_ids)                          # the timers died with it
    assert governors(t) == {"userspace"}                          # nobody put them back yet
    lines = run_policy(example("ondemand.lua"), t, lambda: True, limit=0.5)
    assert governors(t) == {"schedutil"}        # restored first, then saved and restored again
    assert lines[-1]["event"] == "detached"
