"""Network namespaces for tests and demos: two namespaces joined by a veth pair.

Owns `VethPair`, a context manager that makes two named network namespaces
(`ip netns` style, under /run/netns), a veth pair with one end in each, an
address on a private /30 in each, and the loopback and veth devices up; runs
callables (in a thread that has entered the namespace) and commands (`ip
netns exec`) in either end; and on exit removes everything it made, even
after an error halfway through creating it. Also owns `entered(name)`, which
moves the calling thread into a namespace for the length of a `with` block
(attaching a program to a device of another namespace needs that: the
kernel looks the device up in the caller's namespace).

Names are unique per run — namespaces `luabpf-<pid>-<token>-a`/`-b`,
devices `lb<token>a`/`lb<token>b` — so tests can run side by side, and
`remove_stale()` removes namespaces of this naming whose process is dead.
Traffic between the ends never leaves the two namespaces. Does not own
attaching programs (`runtime/attach/`) or packets (`runtime/packets.py`).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import re
import secrets
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["VethPair", "End", "NsThread", "entered", "remove_stale", "namespaces", "NETNS_DIR"]

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
_STALE = re.compile(r"^luabpf-(\d+)-[0-9a-f]+-[ab]$")


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(name: str | None):
    """The body runs with the calling thread in network namespace `name`
    (a name under /run/netns, or a path); None leaves it where it is. The
    thread returns to its own namespace afterwards, also on an error."""
    if name is None:
        yield
        return
    path = name if "/" in name else os.path.join(NETNS_DIR, name)
    try:
        target = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise OSError(errno.ENOENT, f"no network namespace named {name!r}") from None
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


class NsThread(threading.Thread):
    """A callable running in a namespace in the background; `result()` joins
    it and returns its value or raises its exception."""

    def __init__(self, netns: str, fn: Callable, args, kwargs):
        super().__init__(daemon=True, name=f"netns:{netns}")
        self._netns, self._fn, self._args, self._kwargs = netns, fn, args, kwargs
        self._value: Any = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            with entered(self._netns):
                self._value = self._fn(*self._args, **self._kwargs)
        except BaseException as e:        # handed to result()
            self._error = e

    def result(self, timeout: float | None = None):
        self.join(timeout)
        if self.is_alive():
            raise TimeoutError(f"{self._fn.__name__} still running in {self._netns} after {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value


@dataclass
class End:
    """One side of the pair: its namespace, its veth device and address."""
    netns: str
    dev: str
    addr: str
    prefixlen: int
    _threads: list = field(default_factory=list, repr=False)

    @property
    def ifindex(self) -> int:
        with entered(self.netns):
            return socket.if_nametoindex(self.dev)

    def entered(self):
        """`with end.entered():` — the calling thread is in this namespace."""
        return entered(self.netns)

    def start(self, fn: Callable, *args, **kwargs) -> NsThread:
        """Run fn(*args, **kwargs) in this namespace, in a background thread."""
        t = NsThread(self.netns, fn, args, kwargs)
        self._threads.append(t)
        t.start()
        return t

    def call(self, fn: Callable, *args, timeout: float | None = 30, **kwargs):
        """Run fn(*args, **kwargs) in this namespace and return its value."""
        return self.start(fn, *args, **kwargs).result(timeout)

    def command(self, argv: list[str]) -> list[str]:
        """`argv` prefixed to run in this namespace (for subprocess)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(self, argv: list[str], *, timeout: float = 30, check: bool = False,
            **kwargs) -> subprocess.CompletedProcess:
        """Run a command in this namespace; its output captured as text."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.command(argv), timeout=timeout, check=check, **kwargs)

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start a command in this namespace."""
        return subprocess.Popen(self.command(argv), **kwargs)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 inside 10.200.0.0/13 (private, RFC 1918), picked at random: it
    only has to be unique within the two namespaces, which see nothing else."""
    n = secrets.randbelow(1 << 17)                  # /13 holds 2^17 /30s
    base = int(ipaddress.IPv4Address("10.200.0.0")) + n * 4
    return ipaddress.IPv4Network((base, 30))


class VethPair:
    """Two namespaces, `a` and `b`, joined by a veth pair; a context manager.

        with VethPair() as net:
            net.b.start(server)                 # in namespace b
            net.a.call(client, net.b.addr)      # in namespace a
    """

    def __init__(self, subnet: str | None = None):
        self.token = secrets.token_hex(3)
        prefix = f"luabpf-{os.getpid()}-{self.token}"
        net = ipaddress.IPv4Network(subnet) if subnet else _free_subnet()
        hosts = list(net.hosts())
        if len(hosts) < 2:
            raise ValueError(f"{net} has room for fewer than two addresses")
        self.subnet = net
        self.a = End(f"{prefix}-a", f"lb{self.token}a", str(hosts[0]), net.prefixlen)
        self.b = End(f"{prefix}-b", f"lb{self.token}b", str(hosts[1]), net.prefixlen)
        self._made_ns: list[str] = []
        self._veth_in_root = False

    @property
    def ends(self) -> tuple[End, End]:
        return self.a, self.b

    # -- making and removing ---------------------------------------------------------

    def create(self) -> "VethPair":
        from pyroute2 import IPRoute, netns    # pyroute2 takes ~0.3 s to import: on first use only
        remove_stale()
        try:
            for end in self.ends:
                netns.create(end.netns)
                self._made_ns.append(end.netns)
            with IPRoute() as ipr:
                ipr.link("add", ifname=self.a.dev, kind="veth",
                         peer={"ifname": self.b.dev, "net_ns_fd": self.b.netns})
                self._veth_in_root = True
                index = ipr.link_lookup(ifname=self.a.dev)[0]
                ipr.link("set", index=index, net_ns_fd=self.a.netns)
                self._veth_in_root = False
            for end in self.ends:
                self._configure(end)
        except BaseException:
            self.destroy()
            raise
        return self

    def _configure(self, end: End) -> None:
        from pyroute2 import NetNS    # pyroute2 takes ~0.3 s to import: on first use only
        with NetNS(end.netns) as ns:
            index = ns.link_lookup(ifname=end.dev)[0]
            ns.addr("add", index=index, address=end.addr, prefixlen=end.prefixlen)
            ns.link("set", index=index, state="up")
            lo = ns.link_lookup(ifname="lo")
            if lo:
                ns.link("set", index=lo[0], state="up")

    def destroy(self) -> None:
        """Remove the veth pair and both namespaces (what of them exists).
        Waits briefly for threads started in them, so nothing keeps a
        namespace (and its veth end) alive after it is unmounted."""
        from pyroute2 import IPRoute, netns    # pyroute2 takes ~0.3 s to import: on first use only
        errors = []
        for end in self.ends:
            for t in end._threads:
                t.join(5)
        if self._veth_in_root:
            with contextlib.suppress(Exception), IPRoute() as ipr:
                ipr.link("del", ifname=self.a.dev)
        for end in self.ends:
            if end.netns in self._made_ns:
                try:
                    with entered(end.netns):
                        _delete_link(end.dev)
                except OSError:
                    pass
        for name in list(self._made_ns):
            try:
                netns.remove(name)
            except FileNotFoundError:
                pass
            except OSError as e:
                errors.append(e)
            self._made_ns.remove(name)
        if errors:
            raise errors[0]

    def __enter__(self) -> "VethPair":
        return self.create()

    def __exit__(self, *exc) -> None:
        self.destroy()


def _delete_link(dev: str) -> None:
    from pyroute2 import IPRoute    # pyroute2 takes ~0.3 s to import: on first use only
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=dev)
        if found:
            ipr.link("del", index=found[0])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Remove namespaces named by `VethPair` whose process no longer runs
    (left by a test run that was killed); the names removed."""
    from pyroute2 import netns    # pyroute2 takes ~0.3 s to import: on first use only
    removed = []
    for name in netns.listnetns():
        m = _STALE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                netns.remove(name)
                removed.append(name)
    return removed


def namespaces() -> list[str]:
    """The names of the namespaces under /run/netns."""
    from pyroute2 import netns    # pyroute2 takes ~0.3 s to import: on first use only
    return sorted(netns.listnetns())
