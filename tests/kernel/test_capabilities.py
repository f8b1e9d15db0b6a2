"""Issue 9: a user without some capability is told which one, in one sentence, exit 1.

Each case runs the real `luabpf` command as user `nobody` holding exactly the listed
capabilities (setpriv's ambient set), or as root with the others dropped, and asserts
the sentence names exactly what is missing for what was asked: loading each program
type, a test run, attaching (a device in another namespace, a tracepoint, a policy's
timers) — before the kernel answers with "lockdown…" or a verifier error.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from cli_runner import ROOT, run_luabpf

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(shutil.which("setpriv") is None,
                                 reason="setpriv (util-linux) is needed to change capabilities"),
              pytest.mark.skipif(os.geteuid() != 0, reason="only root can run as nobody with chosen "
                                                           "capabilities")]

FILTER = 'function filter(hdr, pld)\n  if hdr.tcp and hdr.tcp.dport == 22 then return false end\n' \
         '  return true\nend\n'
FUNCTION = "function f(a)\n  return a * 2\nend\n"
TRACEPOINT = "function tracepoint.sched.sched_switch(a)\n  return 0\nend\n"
FRAME = "0x" + "ab" * 60


NOBODY: dict = {}     # how user nobody runs luabpf: "python" and "env" (readable_luabpf)


@pytest.fixture(scope="module", autouse=True)
def readable_luabpf():
    """luabpf and the packages it imports, copied where user nobody may read them: the
    checkout may sit in a directory only root can enter (a clone in a 0700 temporary
    directory), and so may its .venv. Debian's python runs them (bcc is its own)."""
    d = tempfile.mkdtemp(prefix="luabpf-nobody-")
    shutil.copytree(ROOT, os.path.join(d, "luabpf"), ignore=shutil.ignore_patterns(
        ".venv", ".git", "tests", "bench", "build", "__pycache__", "*.egg-info"))
    site = next(p for p in sys.path if p.startswith(sys.prefix) and p.endswith("site-packages"))
    shutil.copytree(site, os.path.join(d, "deps"), ignore=shutil.ignore_patterns(
        "pip", "setuptools", "_pytest", "pytest", "hypothesis", "lupa", "__pycache__",
        "__editable__*", "*.pth", "luabpf*", "_distutils_hack"))
    for top, dirs, files in os.walk(d):
        os.chmod(top, 0o755)
        for name in files:
            os.chmod(os.path.join(top, name), 0o644)
    NOBODY["python"] = os.path.realpath(sys.executable)
    NOBODY["examples"] = os.path.join(d, "luabpf", "examples")
    NOBODY["env"] = {**os.environ, "PYTHONPATH": os.pathsep.join([d, os.path.join(d, "deps")])}
    yield
    shutil.rmtree(d)


def nobody_run(wrap: list, *argv, timeout: float = 60) -> subprocess.CompletedProcess:
    """`wrap PYTHON ARGV…` (wrap: setpriv as nobody) with the readable copy of luabpf."""
    return subprocess.run([*wrap, NOBODY["python"], *argv], capture_output=True, text=True,
                          timeout=timeout, cwd="/", env=NOBODY["env"])


@pytest.fixture(scope="module")
def scripts():
    """The scripts, in a directory user nobody may read."""
    d = tempfile.mkdtemp(prefix="luabpf-caps-")
    os.chmod(d, 0o755)
    paths = {}
    for name, text in (("filter", FILTER), ("function", FUNCTION), ("tracepoint", TRACEPOINT)):
        path = os.path.join(d, f"{name}.lua")
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        paths[name] = path
    yield paths
    shutil.rmtree(d)


def as_nobody(caps: str, *argv, timeout: float = 60) -> subprocess.CompletedProcess:
    """`luabpf ARGV…` as user nobody with exactly `caps` ("+bpf,+net_admin"; "" for none)."""
    wrap = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    if caps:
        wrap += [f"--inh-caps=-all,{caps}", f"--ambient-caps=-all,{caps}"]
    else:
        wrap += ["--inh-caps=-all"]
    return nobody_run(wrap, "-m", "luabpf.cli", *argv, timeout=timeout)


def as_root_with(caps: str, *argv, timeout: float = 60) -> subprocess.CompletedProcess:
    """`luabpf ARGV…` as root whose capabilities are only `caps`."""
    return run_luabpf(*argv, capabilities=caps, timeout=timeout)


def one_sentence(r) -> str:
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


ALL_PACKET = "CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON"


@pytest.mark.parametrize("caps,lacks", [
    ("", "CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON"),
    ("+bpf", "CAP_NET_ADMIN and CAP_PERFMON"),          # was: "kernel lockdown, an LSM …"
    ("+bpf,+net_admin", "CAP_PERFMON"),                  # was: a verifier error at `function filter`
    ("+bpf,+perfmon", "CAP_NET_ADMIN"),
    ("+net_admin,+perfmon", "CAP_BPF"),
])
@pytest.mark.parametrize("command", ["check", "test"])
def test_loading_a_filter_names_the_missing_capabilities(scripts, caps, lacks, command):
    argv = [command, scripts["filter"]] + (["--packet", FRAME] if command == "test" else [])
    line = one_sentence(as_nobody(caps, *argv))
    assert line.startswith(f"luabpf: loading an XDP program needs {ALL_PACKET}; "
                           f"this process lacks {lacks} ("), line
    assert line.endswith(f"run luabpf as root, or give it {lacks}).")
    assert ("without CAP_PERFMON the verifier refuses" in line) == ("PERFMON" in lacks)


@pytest.mark.parametrize("caps", ["+bpf,+net_admin,+perfmon", "+sys_admin"])
def test_with_the_capabilities_a_filter_loads_and_runs(scripts, caps):
    """CAP_SYS_ADMIN stands in for the others, as the kernel's checks take it."""
    r = as_nobody(caps, "check", scripts["filter"])
    assert r.returncode == 0 and "verified by the kernel" in r.stdout, r.stderr
    r = as_nobody(caps, "test", scripts["filter"], "--packet", FRAME, "--json")
    assert r.returncode == 0 and '"verdict": "XDP_PASS"' in r.stdout, r.stderr


def test_tc_names_the_tc_program(scripts):
    line = one_sentence(as_nobody("+bpf", "check", scripts["filter"], "--hook", "tc"))
    assert line.startswith(f"luabpf: loading a tc program needs {ALL_PACKET}; this process lacks "
                           "CAP_NET_ADMIN and CAP_PERFMON ("), line


def test_a_function_needs_cap_bpf_only(scripts):
    line = one_sentence(as_nobody("", "call", scripts["function"], "f", "3"))
    assert line == ("luabpf: loading a function program needs CAP_BPF; this process lacks CAP_BPF "
                    "(run luabpf as root, or give it CAP_BPF).")
    r = as_nobody("+bpf", "call", scripts["function"], "f", "3")
    assert (r.returncode, r.stdout) == (0, "6\n"), r.stderr


def test_root_with_capabilities_dropped_is_told_so(scripts):
    line = one_sentence(as_root_with("+bpf", "check", scripts["filter"]))
    assert line.endswith("(without CAP_PERFMON the verifier refuses the packet-pointer arithmetic "
                         "every luabpf filter does; this root process had them dropped: give it "
                         "CAP_NET_ADMIN and CAP_PERFMON).")


def test_a_tracepoint_program_needs_cap_perfmon(scripts):
    r = as_nobody("+bpf,+dac_read_search", "check", scripts["tracepoint"])
    line = one_sentence(r)
    assert line.startswith("luabpf: loading a tracepoint program needs CAP_BPF and CAP_PERFMON; "
                           "this process lacks CAP_PERFMON ("), line


def test_tracefs_unreadable_names_the_capability(scripts):
    r = as_nobody("+bpf,+perfmon", "check", scripts["tracepoint"])
    assert r.returncode == 1
    assert "tracefs is root's: run luabpf as root, or give it CAP_DAC_READ_SEARCH" in r.stderr


@pytest.mark.parametrize("argv,what,lacks", [
    (["--cpufreq", "--dry-run"], "running a CPU-frequency policy needs CAP_BPF and CAP_PERFMON",
     "CAP_PERFMON"),
    ([], "attaching tracepoint programs needs CAP_BPF and CAP_PERFMON", "CAP_PERFMON"),
])
def test_run_names_what_attaching_needs(scripts, argv, what, lacks):
    script = os.path.join(NOBODY["examples"], "overheat.lua") if argv else scripts["tracepoint"]
    line = one_sentence(as_nobody("+bpf", "run", script, *argv, "--duration", "0.1"))
    assert line.startswith(f"luabpf: {what}; this process lacks {lacks} ("), line


def test_run_in_another_namespace_needs_cap_sys_admin(scripts, veth):
    line = one_sentence(as_nobody("+bpf,+net_admin,+perfmon", "run", scripts["filter"], "--xdp",
                                  veth.b.dev, "--netns", veth.b.netns, "--duration", "0.1"))
    assert line == ("luabpf: attaching an XDP filter in another network namespace needs CAP_BPF, "
                    "CAP_NET_ADMIN, CAP_PERFMON and CAP_SYS_ADMIN; this process lacks CAP_SYS_ADMIN "
                    "(entering a network namespace needs CAP_SYS_ADMIN; run luabpf as root, or "
                    "give it CAP_SYS_ADMIN).")
    assert "prog/xdp" not in veth.b.run(["ip", "link", "show", veth.b.dev]).stdout


def test_run_with_exactly_the_needed_capabilities_attaches(scripts):
    """Root's uid (its pins are root's) with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON only:
    the filter attaches; the statistics it cannot turn on are named, the run goes on."""
    import secrets
    a, b = f"lbc{secrets.token_hex(3)}a", None
    b = a[:-1] + "b"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    try:
        subprocess.run(["ip", "link", "set", a, "up"], check=True)
        r = as_root_with("+bpf,+net_admin,+perfmon", "run", scripts["filter"], "--xdp", a,
                         "--duration", "0.3", "--name", f"caps-{a}", "--json")
        assert r.returncode == 0, r.stderr
        assert '"event": "attached"' in r.stdout and '"event": "detached"' in r.stdout
        assert ("luabpf: run-time statistics are off: the bpf(2) command BPF_ENABLE_STATS needs "
                "CAP_SYS_ADMIN; this process lacks CAP_SYS_ADMIN (this root process had it "
                "dropped: give it CAP_SYS_ADMIN).\n") in r.stderr
    finally:
        subprocess.run(["ip", "link", "del", a], check=False)


VERIFIER_CODE = """
import struct
from luabpf.compiler.bpf.uapi import BPF_F_SLEEPABLE, ProgType
from luabpf.runtime import kernel
def insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)
# r1 = r10; r2 = r10; r1 -= r2; r0 = 0; exit: pointer - pointer, refused without CAP_PERFMON
prog = insn(0xbf, 1, 10) + insn(0xbf, 2, 10) + insn(0x1f, 1, 2) + insn(0xb7, 0) + insn(0x95)
try:
    kernel.load_with_log(ProgType.SYSCALL, prog, prog_flags=BPF_F_SLEEPABLE)
    print("loaded")
except kernel.PermissionProblem as e:
    print(e)
"""


def test_a_verifier_rejection_without_cap_perfmon_says_so():
    r = nobody_run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                    "--inh-caps=-all,+bpf", "--ambient-caps=-all,+bpf"], "-c", VERIFIER_CODE)
    assert r.stdout.strip() == (
        "the kernel verifier rejected the program (R1 pointer -= pointer prohibited) and this "
        "process lacks CAP_PERFMON, without which the verifier refuses pointer arithmetic "
        "luabpf's code does (run luabpf as root, or give it CAP_PERFMON)."), r.stderr
    full = subprocess.run([sys.executable, "-c", VERIFIER_CODE], capture_output=True, text=True,
                          timeout=60)
    assert full.stdout.strip() == "loaded", full.stderr


def test_a_refused_perf_event_names_cap_perfmon():
    code = ("import errno\nfrom luabpf.runtime.attach import perf\n"
            "print(perf._open_error(OSError(errno.EACCES, 'x'), 'tracepoint sched:sched_switch', 0))")
    r = nobody_run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                    "--inh-caps=-all,+bpf", "--ambient-caps=-all,+bpf"], "-c", code)
    with open("/proc/sys/kernel/perf_event_paranoid") as f:
        paranoid = f.read().strip()
    assert r.stdout.strip() == ("opening a perf event for tracepoint sched:sched_switch needs "
                                "CAP_PERFMON; this process lacks CAP_PERFMON (kernel."
                                f"perf_event_paranoid is {paranoid}; run luabpf as root, "
                                "or give it CAP_PERFMON)."), r.stderr


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) makes the user namespace")
def test_capabilities_in_a_user_namespace_do_not_count(scripts):
    """`unshare -U -r`: every capability, but a user namespace's — the kernel's BPF checks
    look at the initial one, so before: EPERM "… lockdown, an LSM or a sysctl …"."""
    r = subprocess.run(["unshare", "--user", "--map-root-user", sys.executable, "-m", "luabpf.cli",
                        "call", scripts["function"], "f", "3"],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert one_sentence(r) == (
        "luabpf: loading a function program needs CAP_BPF; this process lacks CAP_BPF (its "
        "capabilities are those of a user namespace, which the kernel does not take for BPF; "
        "run luabpf in the initial user namespace, as root or with CAP_BPF).")


def test_a_held_device_without_cap_sys_admin_says_how_to_find_the_holder(scripts):
    """Listing the kernel's links needs CAP_SYS_ADMIN: without it the sentence cannot say
    whether a link holds the program, and says how to find out."""
    import secrets
    import luabpf
    from luabpf.runtime.attach import Target, attach
    a = f"lbh{secrets.token_hex(3)}a"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", a[:-1] + "b"], check=True)
    try:
        prog = luabpf.compile("function filter(hdr, pld)\n  return true\nend\n", "p.lua", "xdp")
        with prog.load() as loaded, attach(loaded.fd, Target("xdp", a)) as link:
            r = as_root_with("+bpf,+net_admin,+perfmon", "run", scripts["filter"], "--xdp", a,
                             "--duration", "0.2", "--name", f"held-{a}")
            lines = [l for l in r.stderr.splitlines() if "already has" in l]
            assert r.returncode == 1 and lines == [
                f"luabpf: {a} already has an XDP program (id {link.prog_id}); luabpf does not "
                f"replace it (`bpftool link` shows whether a BPF link holds it; if none does, "
                f"remove it with: ip link set dev {a} xdp off)"], r.stderr
    finally:
        subprocess.run(["ip", "link", "del", a], check=False)
