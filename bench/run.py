"""The benchmark: luabpf against clang -O2 on equivalent C, in the running kernel.

    .venv/bin/python bench/run.py [--quick] [--json] [--fuzz N]

For each example filter (examples/{ssh_filter,port_blocklist,icmp_guard,dns_blocklist}.lua)
and its hand-written C twin (bench/c/filters.c, clang-19 -O2 -target bpf -mcpu=v4): BPF
instructions after loading (xlated_prog_len / 8), instructions the verifier processed
(verified_insns), ns/packet from BPF_PROG_TEST_RUN on representative frames, the ratios
luabpf/clang and their geometric means; luabpf's compile + verify + load time in-process
and `luabpf check FILE` end to end, against the targets bench/README.md gives; the integer functions of
examples/intmath.lua against bench/c/intmath.c; bcc, which fails here without kernel
headers. Every frame's verdict is checked three ways (luabpf, clang, and Lua 5.4 running the
script on scapy's dissection, tests/filter_reference.py), plus random frames: a benchmark of
a filter that answers differently is worthless, so a disagreement is printed, never hidden.

A benchmark, not a test: nothing here asserts a timing. Needs root (bpf(2)).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


import luabpf  # noqa: E402
from luabpf.api import compile_function, entry_points  # noqa: E402
from luabpf.compiler.bpf.uapi import BPF_F_SLEEPABLE, XDP_DROP, XDP_PASS, ProgType  # noqa: E402
from luabpf.compiler.obj import elfread  # noqa: E402
from luabpf.runtime import kernel  # noqa: E402

CLANG = "clang-19"
CFLAGS = ["-O2", "-target", "bpf", "-mcpu=v4"]
VERDICT = {XDP_DROP: "drop", XDP_PASS: "pass"}
TARGET_LOAD_MS, TARGET_CHECK_MS = 20.0, 300.0
FILTERS = ("ssh_filter", "port_blocklist", "icmp_guard", "dns_blocklist")


# ---- frames ------------------------------------------------------------------------------

def frames() -> dict[str, list[tuple[str, bytes]]]:
    """Representative frames per filter: (label, frame bytes)."""
    from scapy.all import DNS, DNSQR, DNSRR, ICMP, IP, TCP, UDP, Dot1Q, Ether, IPv6, Raw
    from scapy.layers.inet6 import ICMPv6EchoRequest

    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    v4 = eth / IP(src="10.0.0.1", dst="10.0.0.2", ttl=64)
    v6 = eth / IPv6(src="fd00::1", dst="fd00::2")
    http = (b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/8.5.0\r\n"
            b"Accept: */*\r\nAccept-Language: en-US,en;q=0.9\r\nCache-Control: no-cache\r\n"
            b"Connection: keep-alive\r\nX-Request-Id: 5f2b8c1e-9d4a-4e7b-b0c3-7a6e1d2f9b84\r\n\r\n")
    dns_q = lambda name, **kw: DNS(id=0x1234, rd=1, qd=DNSQR(qname=name), **kw)  # noqa: E731
    b = lambda p: bytes(p)  # noqa: E731
    return {
        "ssh_filter": [
            ("SSH banner OpenSSH_6.4 (vulnerable)",
             b(v4 / TCP(sport=22, dport=40000, flags="PA") / b"SSH-2.0-OpenSSH_6.4 Debian-5\r\n")),
            ("SSH banner OpenSSH_9.6p1 (safe)",
             b(v4 / TCP(sport=22, dport=40000, flags="PA") / b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")),
            ("TCP, HTTP request (no SSH)", b(v4 / TCP(sport=40000, dport=80, flags="PA") / http)),
            ("UDP, DNS query", b(v4 / UDP(sport=40000, dport=53) / dns_q("www.example.org"))),
            ("IPv6 TCP SSH banner 6.4", b(v6 / TCP(sport=22, dport=40000, flags="PA")
                                           / b"SSH-2.0-OpenSSH_6.4 FreeBSD\r\n")),
        ],
        "port_blocklist": [
            ("TCP to 445 (SMB)", b(v4 / TCP(sport=40000, dport=445, flags="S"))),
            ("TCP to 443", b(v4 / TCP(sport=40000, dport=443, flags="S"))),
            ("UDP to 135", b(v4 / UDP(sport=40000, dport=135) / (b"x" * 32))),
            ("UDP to 53", b(v4 / UDP(sport=40000, dport=53) / dns_q("www.example.org"))),
            ("VLAN TCP to 3389", b(eth / Dot1Q(vlan=7) / IP(src="10.0.0.1", dst="10.0.0.2")
                                   / TCP(sport=40000, dport=3389, flags="S"))),
            ("IPv6 TCP to 23", b(v6 / TCP(sport=40000, dport=23, flags="S"))),
        ],
        "icmp_guard": [
            ("ping, 56 bytes", b(v4 / ICMP(type=8) / (b"p" * 56))),
            ("ping, 1000 bytes", b(v4 / ICMP(type=8) / (b"p" * 1000))),
            ("ICMP, TTL 1", b(eth / IP(src="10.0.0.1", dst="10.0.0.2", ttl=1) / ICMP(type=0) / (b"x" * 8))),
            ("ICMPv6 ping, 200 bytes", b(v6 / ICMPv6EchoRequest(data=b"p" * 200))),
            ("TCP (not ICMP)", b(v4 / TCP(sport=40000, dport=443, flags="S"))),
        ],
        "dns_blocklist": [
            ("query example.com", b(v4 / UDP(sport=40000, dport=53) / dns_q("example.com"))),
            ("query example.org", b(v4 / UDP(sport=40000, dport=53) / dns_q("example.org"))),
            ("answer example.com", b(v4 / UDP(sport=53, dport=53) / dns_q(
                "example.com", qr=1, an=DNSRR(rrname="example.com", rdata="93.184.216.34")))),
            ("IPv6 query example.com", b(v6 / UDP(sport=40000, dport=53) / dns_q("example.com"))),
            ("TCP to 80", b(v4 / TCP(sport=40000, dport=80, flags="PA") / Raw(b"GET / HTTP/1.0\r\n\r\n"))),
        ],
    }


def random_frames(n: int, seed: int) -> list[bytes]:
    """Frames that stress the parse and the decisions: VLAN tags, IPv4 options, fragments,
    truncation, odd lengths, ports and ICMP types of the filters, SSH-like and DNS-like
    payloads."""
    from scapy.all import DNS, DNSQR, ICMP, IP, TCP, UDP, Dot1AD, Dot1Q, Ether, IPv6
    rnd = random.Random(seed)
    words = [b"SSH-", b"SSH-2.0-", b"OpenSSH_6.4", b"OpenSSH_6.5", b"-", b" ", b"\r\n", b"G",
             b"SSH", b"x", b"%", b"\x00", b"2.0", b"_6.4", b"OpenSSH_6.4-"]
    ports = [22, 23, 53, 80, 135, 139, 443, 445, 3389, 40000, rnd.randrange(65536)]
    out = []
    for _ in range(n):
        pkt = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        for _ in range(rnd.choice([0, 0, 0, 1, 2])):
            pkt = pkt / rnd.choice([Dot1Q, Dot1AD])(vlan=rnd.randrange(4096))
        if rnd.random() < 0.7:
            ip = IP(src="10.0.0.1", dst="10.0.0.2", ttl=rnd.choice([0, 1, 2, 3, 64]))
            if rnd.random() < 0.15:
                ip.options = [b"\x01" * rnd.choice([4, 8, 12])]
            if rnd.random() < 0.1:
                ip.frag = rnd.choice([0, 1, 100])
                ip.flags = rnd.choice([0, 1])
        else:
            ip = IPv6(src="fd00::1", dst="fd00::2")
        kind = rnd.choice(["tcp", "udp", "icmp", "dns"])
        if kind == "tcp":
            l4 = TCP(sport=rnd.choice(ports), dport=rnd.choice(ports), flags="PA")
            if rnd.random() < 0.2:
                l4.options = [("NOP", None)] * rnd.choice([4, 8, 12])
            body = b"".join(rnd.choice(words) for _ in range(rnd.randrange(0, 12)))
        elif kind == "udp":
            l4 = UDP(sport=rnd.choice(ports), dport=rnd.choice(ports))
            body = b"".join(rnd.choice(words) for _ in range(rnd.randrange(0, 8)))
        elif kind == "icmp":
            l4 = ICMP(type=rnd.choice([0, 8, 128, 3])) if isinstance(ip, IP) else None
            if l4 is None:
                from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6EchoReply
                l4 = rnd.choice([ICMPv6EchoRequest, ICMPv6EchoReply])()
            body = b"p" * rnd.choice([0, 8, 56, 64, 65, 200])
        else:
            l4 = UDP(sport=rnd.randrange(65536), dport=53)
            body = bytes(DNS(id=rnd.randrange(65536), qr=rnd.choice([0, 0, 1]), opcode=rnd.choice([0, 0, 1]),
                             qd=DNSQR(qname=rnd.choice(["example.com", "example.org", "example.co",
                                                        "www.example.com"]))))
        raw = bytes(pkt / ip / l4 / body)
        r = rnd.random()
        if r < 0.1:                                    # cut short
            raw = raw[:rnd.randrange(14, len(raw) + 1)]
        elif r < 0.15:                                 # Ethernet padding after the IP packet
            raw = raw + b"\x00" * rnd.randrange(1, 30)
        elif r < 0.2:                                  # a random byte flipped
            i = rnd.randrange(14, len(raw))
            raw = raw[:i] + bytes([rnd.randrange(256)]) + raw[i + 1:]
        out.append(raw)
    return out


def reference():
    """Lua 5.4 running the script on scapy's dissection (tests/filter_reference.py), or None."""
    try:
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        import filter_reference
        return filter_reference.Reference
    except Exception:                                  # lupa missing, or the module moved
        return None


# ---- clang --------------------------------------------------------------------------------

def clang_compile(src: str, out: str) -> float:
    """clang -O2 on one C file; the wall time in ms."""
    t = time.perf_counter()
    subprocess.run([CLANG, *CFLAGS, "-c", src, "-o", out], check=True)
    return (time.perf_counter() - t) * 1000


def load_raw(prog_type: int, code: bytes, name: str, flags: int = 0):
    """Load raw instructions; (fd, None) or (None, the verifier's last complaint)."""
    try:
        return kernel.load_with_log(prog_type, code, name=name[:15], prog_flags=flags), None
    except kernel.BpfError as e:
        lines = [l for l in (e.log or "").splitlines() if l.strip() and not l.startswith(("processed", "verification"))]
        reason = lines[-1].strip() if lines else str(e)
        return None, reason


def info(fd) -> tuple[int, int]:
    i = kernel.prog_info(fd)
    return i["xlated_prog_len"] // 8, i["verified_insns"]


def test_run(fd, frame: bytes, repeat: int) -> tuple[int, int]:
    res = kernel.prog_test_run(fd, data_in=frame, repeat=repeat)
    return res.retval, res.duration_ns


# ---- bcc ----------------------------------------------------------------------------------

BCC_PROBE = r"""
import sys, time
t = time.perf_counter()
try:
    from bcc import BPF
except Exception as e:
    print("not installed:", e); sys.exit(0)
try:
    BPF(text=open(sys.argv[1]).read())
    print("OK %.0f ms" % ((time.perf_counter() - t) * 1000))
except Exception as e:
    print("FAIL", e)
"""


def bcc_status() -> str:
    """bcc compiles C at load time and needs the kernel's headers."""
    py = sys.executable
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "port.c")
        with open(src, "w") as f:
            f.write("int port_blocklist(struct xdp_md *ctx) { return XDP_PASS; }\n")
        try:
            p = subprocess.run([py, "-c", BCC_PROBE, src], capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            return "fails — timed out"
    out = p.stdout.strip()
    if out.startswith("OK"):
        return "loads (" + out[3:] + ")"
    if out.startswith("not installed"):
        return "not installed"
    why = "no kernel headers" if "kernel headers" in p.stderr or "/build" in p.stderr else (out or p.stderr)[:80]
    return f"fails — {why}"


# ---- the measurements ---------------------------------------------------------------------

def measure_filters(args, ref_cls) -> dict:
    repeat, rounds = (10_000, 1) if args.quick else (1_000_000, 3)
    n_load = 5 if args.quick else 20
    n_check = 2 if args.quick else 5
    tmp = tempfile.mkdtemp(prefix="luabpf-bench-")
    try:
        obj = os.path.join(tmp, "filters.o")
        clang_ms = clang_compile(os.path.join(HERE, "c", "filters.c"), obj)
        c_progs = elfread.read(obj).programs()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    frame_sets = frames()
    fuzz = random_frames(args.fuzz, seed=2024) if args.fuzz else []
    luabpf_cli = os.path.join(os.path.dirname(sys.executable), "luabpf")
    results = {"clang_compile_ms": clang_ms, "filters": []}
    for name in FILTERS:
        path = os.path.join(ROOT, "examples", name + ".lua")
        src = open(path).read()
        row = {"filter": name}
        # luabpf: compile -> verify -> load, in-process (the first once, unmeasured: imports)
        luabpf.compile(src, name + ".lua", hook="xdp").load().close()
        times = []
        for _ in range(n_load):
            t = time.perf_counter()
            prog = luabpf.compile(src, name + ".lua", hook="xdp")
            loaded = prog.load()
            times.append((time.perf_counter() - t) * 1000)
            loaded.close()
        row["load_ms"] = statistics.mean(times)
        checks = []
        for _ in range(n_check):
            t = time.perf_counter()
            p = subprocess.run([luabpf_cli, "check", path], capture_output=True, text=True)
            checks.append((time.perf_counter() - t) * 1000)
        row["check_ms"] = statistics.mean(checks)
        row["check_ok"] = p.returncode == 0
        prog = luabpf.compile(src, name + ".lua", hook="xdp")
        loaded = prog.load()
        row["luabpf_insns"], row["luabpf_verified"] = info(loaded.fd)
        sec, code = c_progs[name]
        cfd, why = load_raw(ProgType.XDP, code, name)
        row["clang_object_insns"] = len(code) // 8
        if cfd is None:
            row["clang_error"] = why
            row["clang_insns"] = row["clang_verified"] = None
        else:
            row["clang_insns"], row["clang_verified"] = info(cfd)
        ref = ref_cls(src, "xdp") if ref_cls else None
        # verdicts: luabpf, clang and Lua 5.4 on every frame
        mismatches, ref_differs = [], []
        checked = 0
        for label, frame in list(frame_sets[name]) + [(f"random #{i}", f) for i, f in enumerate(fuzz)]:
            lv = VERDICT.get(test_run(loaded.fd, frame, 1)[0], "?")
            cv = VERDICT.get(test_run(cfd, frame, 1)[0], "?") if cfd is not None else None
            rv = ref.verdict(frame) if ref else None
            checked += 1
            seen = {"frame": label, "luabpf": lv, "clang": cv, "lua54": rv, "hex": frame.hex()}
            if cv is not None and lv != cv:
                mismatches.append(seen)          # the C filter is not the Lua one: a warning
            elif rv is not None and lv != rv:
                ref_differs.append(seen)         # both kernels agree against the Lua model
        row["verdicts_checked"] = checked
        row["verdict_mismatches"] = mismatches
        row["reference_differs"] = ref_differs
        row["reference"] = ref is not None
        # ns/packet, rounds interleaved, best round kept
        row["frames"] = []
        for label, frame in frame_sets[name]:
            lns, cns = [], []
            for _ in range(rounds):
                v, ns = test_run(loaded.fd, frame, repeat)
                lns.append(ns)
                if cfd is not None:
                    cns.append(test_run(cfd, frame, repeat)[1])
            row["frames"].append({"frame": label, "verdict": VERDICT.get(v, str(v)), "bytes": len(frame),
                                  "luabpf_ns": min(lns), "clang_ns": min(cns) if cns else None})
        loaded.close()
        if cfd is not None:
            cfd.close()
        results["filters"].append(row)
    results["repeat"], results["rounds"] = repeat, rounds
    results["load_runs"], results["check_runs"] = n_load, n_check
    return results


INTMATH_ARGS = {"gcd": [(1071, 462), (-48, 18)], "isqrt": [(1 << 40,), (99,)], "collatz": [(27,), (97,)],
                "bits": [(0xF0F0,), (-1,)], "perfect": [(496,), (100,)]}


def measure_intmath() -> list[dict]:
    src_path = os.path.join(ROOT, "examples", "intmath.lua")
    src = open(src_path).read()
    tmp = tempfile.mkdtemp(prefix="luabpf-bench-")
    try:
        obj = os.path.join(tmp, "intmath.o")
        clang_compile(os.path.join(HERE, "c", "intmath.c"), obj)
        c_progs = elfread.read(obj).programs()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for name, nargs in entry_points(src, "intmath.lua"):
        row = {"function": name}
        prog = compile_function(src, name, ("int",) * nargs, "intmath.lua")
        with prog.load() as loaded:
            row["luabpf_insns"], row["luabpf_verified"] = info(loaded.fd)
        row["luabpf_compiled_insns"] = prog.insn_count
        if name not in c_progs:
            row["clang_error"] = "not in bench/c/intmath.c"
            rows.append(row)
            continue
        code = c_progs[name][1]
        row["clang_object_insns"] = len(code) // 8
        fd, why = load_raw(ProgType.SYSCALL, code, name, BPF_F_SLEEPABLE)
        if fd is None:
            row["clang_error"] = why
        else:
            row["clang_insns"], row["clang_verified"] = info(fd)
            fd.close()
        rows.append(row)
    return rows


# ---- output -------------------------------------------------------------------------------

def ratio(a, b):
    return a / b if a is not None and b else None


def geomean(xs):
    xs = [x for x in xs if x]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def summarise(res: dict) -> None:
    rows = res["filters"]
    for r in rows:
        r["insns_ratio"] = ratio(r["luabpf_insns"], r["clang_insns"])
        r["verified_ratio"] = ratio(r["luabpf_verified"], r["clang_verified"])
        for f in r["frames"]:
            f["ratio"] = ratio(f["luabpf_ns"], f["clang_ns"])
    res["geomean"] = {
        "insns": geomean(r["insns_ratio"] for r in rows),
        "verified": geomean(r["verified_ratio"] for r in rows),
        "ns": geomean(f["ratio"] for r in rows for f in r["frames"]),
    }
    for r in res["intmath"]:
        c = r.get("clang_insns") or r.get("clang_object_insns")
        r["insns_ratio"] = ratio(r["luabpf_insns"], c)
    res["intmath_geomean"] = geomean(r["insns_ratio"] for r in res["intmath"])


def fmt(x, spec="{:,}", none="—"):
    return none if x is None else spec.format(x)


def fmt_ratio(x):
    if x is None:
        return "—"
    colour = "green" if x <= 1.0 else ("yellow" if x <= 1.5 else "red")
    return f"[{colour}]{x:.2f}[/{colour}]"


def print_tables(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    console = Console(width=max(150, Console().width))
    mode = f"repeat {res['repeat']:,}, best of {res['rounds']}"

    t = Table(title=f"luabpf vs clang -O2 (bench/c/filters.c): generated code, verifier, load time  "
                    f"[kernel {os.uname().release}]", title_justify="left")
    for col, j in [("filter", "left"), ("insns\nluabpf", "right"), ("insns\nclang", "right"), ("ratio", "right"),
                   ("verified\nluabpf", "right"), ("verified\nclang", "right"), ("ratio", "right"),
                   ("compile+load\nms (≤ 20)", "right"), ("luabpf check\nms (≤ 300)", "right"),
                   ("verdicts", "left")]:
        t.add_column(col, justify=j)
    for r in res["filters"]:
        lm = r["load_ms"]
        cm = r["check_ms"]
        n_bad, n_ref = len(r["verdict_mismatches"]), len(r["reference_differs"])
        if n_bad:
            verdicts = (f"[bold red]WARNING: luabpf ≠ clang on {n_bad}/{r['verdicts_checked']} frames[/bold red] "
                        f"(first: {r['verdict_mismatches'][0]['frame']})")
        else:
            verdicts = f"[green]ok[/green] luabpf = clang, {r['verdicts_checked']} frames"
            if r["reference"] and not n_ref:
                verdicts += " = Lua 5.4"
        if n_ref:
            verdicts += f"; [yellow]Lua 5.4 model differs on {n_ref}[/yellow]"
        if "clang_error" in r:
            verdicts = f"[red]clang rejected: {r['clang_error'][:40]}[/red]; " + verdicts
        t.add_row(r["filter"], fmt(r["luabpf_insns"]), fmt(r["clang_insns"]), fmt_ratio(r["insns_ratio"]),
                  fmt(r["luabpf_verified"]), fmt(r["clang_verified"]), fmt_ratio(r["verified_ratio"]),
                  f"[{'green' if lm <= TARGET_LOAD_MS else 'red'}]{lm:.1f}[/]",
                  f"[{'green' if cm <= TARGET_CHECK_MS and r['check_ok'] else 'red'}]{cm:.0f}"
                  f"{'' if r['check_ok'] else ' (failed)'}[/]", verdicts)
    g = res["geomean"]
    t.add_row("[bold]geometric mean[/bold]", "", "", fmt_ratio(g["insns"]), "", "", fmt_ratio(g["verified"]),
              "", "", "", end_section=True)
    t.add_row("bcc", "", "", "", "", "", "", "", "", res["bcc"])
    t.caption = (f"clang-19 -O2 compiles all four C filters in {res['clang_compile_ms']:.0f} ms (one file); "
                 f"compile+load: mean of {res['load_runs']}, luabpf check: mean of {res['check_runs']} runs")
    console.print(t)

    t = Table(title=f"ns/packet, BPF_PROG_TEST_RUN ({mode})", title_justify="left")
    for col, j in [("filter", "left"), ("frame", "left"), ("bytes", "right"), ("verdict", "left"),
                   ("luabpf ns", "right"), ("clang ns", "right"), ("ratio", "right")]:
        t.add_column(col, justify=j)
    for r in res["filters"]:
        for i, f in enumerate(r["frames"]):
            t.add_row(r["filter"] if i == 0 else "", f["frame"], str(f["bytes"]), f["verdict"],
                      fmt(f["luabpf_ns"]), fmt(f["clang_ns"]), fmt_ratio(f["ratio"]),
                      end_section=i == len(r["frames"]) - 1)
    t.add_row("[bold]geometric mean[/bold]", "", "", "", "", "", fmt_ratio(g["ns"]))
    console.print(t)

    t = Table(title="examples/intmath.lua (luabpf function hook) vs bench/c/intmath.c (clang -O2), "
                    "SYSCALL programs", title_justify="left")
    for col, j in [("function", "left"), ("insns\nluabpf", "right"), ("insns\nclang", "right"), ("ratio", "right"),
                   ("verified\nluabpf", "right"), ("verified\nclang", "right"), ("clang", "left")]:
        t.add_column(col, justify=j)
    for r in res["intmath"]:
        rejected = "clang_error" in r
        c_insns = fmt(r.get("clang_insns")) if not rejected else fmt(r.get("clang_object_insns")) + "†"
        t.add_row(r["function"], fmt(r["luabpf_insns"]), c_insns, fmt_ratio(r["insns_ratio"]),
                  fmt(r["luabpf_verified"]), fmt(r.get("clang_verified")),
                  f"[red]verifier rejects: {r['clang_error']}[/red]" if rejected else "[green]loaded[/green]")
    t.add_row("[bold]geometric mean[/bold]", "", "", fmt_ratio(res["intmath_geomean"]), "", "", "")
    t.caption = "† the object's instruction count: the kernel refused to load clang's program"
    console.print(t)
    for r in res["filters"]:
        for m in r["verdict_mismatches"][:5]:
            console.print(f"[bold red]verdict mismatch[/bold red] {r['filter']}: {m['frame']}: luabpf {m['luabpf']}, "
                          f"clang {m['clang']}, Lua 5.4 {m['lua54']}: {m['hex']}")
        for m in r["reference_differs"][:2]:
            console.print(f"[yellow]Lua 5.4 reference model (tests/filter_reference.py) differs[/yellow] "
                          f"{r['filter']}: {m['frame']}: luabpf and clang {m['luabpf']}, Lua 5.4 model "
                          f"{m['lua54']}: {m['hex']}")
        if len(r["reference_differs"]) > 2:
            console.print(f"  … and {len(r['reference_differs']) - 2} more ({r['filter']})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="repeat 10,000 instead of 1,000,000, one round")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    ap.add_argument("--fuzz", type=int, default=None,
                    help="random frames whose verdicts are compared per filter (default 300; --quick 100)")
    args = ap.parse_args(argv)
    if args.fuzz is None:
        args.fuzz = 100 if args.quick else 300
    if shutil.which(CLANG) is None:
        print(f"bench: {CLANG} is not installed", file=sys.stderr)
        return 1
    kernel.possible_cpus()
    res = measure_filters(args, reference())
    res["intmath"] = measure_intmath()
    res["bcc"] = bcc_status()
    res["kernel"] = os.uname().release
    res["quick"] = args.quick
    summarise(res)
    if args.json:
        json.dump(res, sys.stdout, indent=1)
        print()
    else:
        print_tables(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
