"""Fixtures for the kernel tests that move real packets.

`veth` — a fresh `VethPair` (two network namespaces joined by a veth pair,
addresses on a private /30), removed after the test; the test fails if
anything of it (namespace or device) is left behind.

`banner_exchange` — a function `exchange(net, banner, port=22, timeout=2.0)`
that starts a TCP server in namespace `net.b` which sends `banner` on
connect (an SSH identification string, say), connects from namespace `net.a`
and returns the bytes the client read before `timeout` (b"" when a filter
dropped them). Both ends are bounded in time; all traffic stays inside the
two namespaces.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading

import pytest

from luabpf.runtime import features


@pytest.fixture
def veth():
    from luabpf.runtime.netns import VethPair, namespaces
    net = VethPair()
    with net:
        yield net
    left = [n for n in namespaces() if net.token in n]
    devices = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert not left, f"namespaces left behind: {left}"
    assert net.token not in devices, f"devices left behind: {devices}"


def _exchange(net, banner: bytes, port: int = 22, timeout: float = 2.0) -> bytes:
    listening = threading.Event()
    done = threading.Event()

    def server():
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            srv.bind((net.b.addr, port))
            srv.listen(1)
            srv.settimeout(timeout + 5)
            listening.set()
            conn, _ = srv.accept()
            with conn:
                conn.sendall(banner)
                done.wait(timeout + 5)          # hold the connection while the client reads
        finally:
            listening.set()
            srv.close()

    def client() -> bytes:
        sock = socket.create_connection((net.b.addr, port), timeout=timeout)
        got = b""
        with sock:
            sock.settimeout(timeout)
            try:
                while len(got) < len(banner):
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            except socket.timeout:
                pass
        return got

    srv = net.b.start(server)
    assert listening.wait(10), "the server did not start"
    try:
        return net.a.call(client, timeout=timeout + 10)
    finally:
        done.set()
        srv.result(timeout + 10)


@pytest.fixture
def banner_exchange():
    return _exchange


@pytest.fixture
def pin_dir():
    """A directory of this test's own in bpffs for `bpftool … pinmaps`/`loadall`; removed,
    with everything pinned in it, after the test."""
    path = os.path.join(features.ensure_bpffs(), f"luabpf-test-{os.getpid()}")
    os.makedirs(path, exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)
    assert not os.path.exists(path)
