"""The ring buffer consumer (runtime/ringbuf.py) against real BPF_MAP_TYPE_RINGBUF
maps, fed by tiny hand-assembled XDP programs run with BPF_PROG_TEST_RUN. (Sizes refused
before bpf(2), and the header rules on a ring laid out by hand:
tests/unit/test_ringbuf_offline.py.)"""
from __future__ import annotations

import errno
import os
import struct
import threading
import time
from contextlib import ExitStack, contextmanager

import pytest

from luabpf.compiler.bpf import asm, encode
from luabpf.runtime import kernel
from luabpf.compiler.bpf.uapi import MapType, ProgType
from luabpf.runtime.ringbuf import PAGE_SIZE, RingBuffer, ringbuf_create

pytestmark = pytest.mark.kernel

PACKET = 64

# bpf_ringbuf_output(ring, packet[0 .. n), n, 0) with n = (packet[0] & 31) + 1,
# copied through the stack; returns the helper's result (0, or -errno).
OUTPUT = """
    r2 = *(u32 *)(r1 +0)
    r3 = *(u32 *)(r1 +4)
    r4 = r2
    r4 += 32
    if r4 > r3 goto short
    r5 = *(u64 *)(r2 +0)
    *(u64 *)(r10 -32) = r5
    r5 = *(u64 *)(r2 +8)
    *(u64 *)(r10 -24) = r5
    r5 = *(u64 *)(r2 +16)
    *(u64 *)(r10 -16) = r5
    r5 = *(u64 *)(r2 +24)
    *(u64 *)(r10 -8) = r5
    r3 = *(u8 *)(r2 +0)
    r3 &= 31
    r3 += 1
    r1 = map[fd:{fd}] ll
    r2 = r10
    r2 += -32
    r4 = 0
    call bpf_ringbuf_output#130
    exit
short:
    r0 = 1000
    exit
"""

# reserve 8 bytes, copy packet[0 .. 8) in, then discard the record when
# packet[0] is odd and submit it when even; returns 0 submitted, 1 discarded.
RESERVE = """
    r7 = *(u32 *)(r1 +0)
    r8 = *(u32 *)(r1 +4)
    r4 = r7
    r4 += 8
    if r4 > r8 goto short
    r1 = map[fd:{fd}] ll
    r2 = 8
    r3 = 0
    call bpf_ringbuf_reserve#131
    if r0 == 0 goto full
    r5 = *(u64 *)(r7 +0)
    *(u64 *)(r0 +0) = r5
    r1 = r0
    r2 = 0
    r5 = *(u8 *)(r7 +0)
    r5 &= 1
    if r5 != 0 goto discard
    call bpf_ringbuf_submit#132
    r0 = 0
    exit
discard:
    call bpf_ringbuf_discard#133
    r0 = 1
    exit
full:
    r0 = 2
    exit
short:
    r0 = 1000
    exit
"""


@contextmanager
def ring_and_prog(size: int, text: str = OUTPUT):
    """(ring map fd, program fd, RingBuffer), all closed afterwards."""
    with ExitStack() as stack:
        ring = stack.enter_context(ringbuf_create(size, name="test_rb"))
        prog = stack.enter_context(kernel.load_with_log(
            ProgType.XDP, encode.encode(asm.assemble(text.format(fd=int(ring)))),
            name="rb_test"))
        rb = stack.enter_context(RingBuffer(ring, size))
        yield ring, prog, rb


def packet(seq: int, n: int) -> bytes:
    """A packet whose record (from OUTPUT) is its first `n` bytes (1..32):
    byte 0 encodes n, bytes 1..8 hold `seq`, the rest a pattern."""
    assert 1 <= n <= 32
    body = bytes([(n - 1) | ((seq & 7) << 5)]) + struct.pack("<Q", seq)
    return body + bytes((seq + i) & 0xFF for i in range(PACKET - len(body)))


def run(prog, data: bytes) -> int:
    """Run the program once on `data`; its return value, signed."""
    retval = kernel.prog_test_run(prog, data_in=data).retval
    return struct.unpack("<i", struct.pack("<I", retval))[0]


def record_size(n: int) -> int:
    return (8 + n + 7) & ~7


# --- sizes and ownership

def test_fd_must_be_a_ring_of_that_size():
    with ringbuf_create(2 * PAGE_SIZE) as ring, kernel.map_create(MapType.ARRAY, 4, 4, 1) as arr:
        with pytest.raises(ValueError, match="not a ring buffer"):
            RingBuffer(ring, PAGE_SIZE)
        with pytest.raises(ValueError, match="not a ring buffer"):
            RingBuffer(arr, PAGE_SIZE)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _bpf_mappings() -> int:
    with open("/proc/self/maps") as f:
        return sum("bpf" in line and "anon_inode" in line for line in f)


def test_close_releases_everything_but_the_map_fd():
    with ringbuf_create(PAGE_SIZE) as ring:
        fds, maps = _open_fds(), _bpf_mappings()
        with RingBuffer(ring, PAGE_SIZE) as rb:
            assert _bpf_mappings() == maps + 2
            assert len(_open_fds()) > len(fds)
        assert _open_fds() == fds
        assert _bpf_mappings() == maps
        rb.close()                                       # idempotent
        with pytest.raises(ValueError, match="closed"):
            rb.drain()
        assert kernel.map_info(ring)["type"] == MapType.RINGBUF   # still ours, still open


def test_ring_outlives_its_map_fd():
    with ExitStack() as stack:
        ring = ringbuf_create(PAGE_SIZE)
        prog = stack.enter_context(kernel.load_with_log(
            ProgType.XDP, encode.encode(asm.assemble(OUTPUT.format(fd=int(ring))))))
        rb = stack.enter_context(RingBuffer(ring, PAGE_SIZE))
        ring.close()                        # the program and the mappings hold the map
        assert run(prog, packet(7, 5)) == 0
        assert rb.drain() == [packet(7, 5)[:5]]


# --- records

def test_records_arrive_in_order_with_exact_bytes():
    with ring_and_prog(4 * PAGE_SIZE) as (_, prog, rb):
        assert rb.drain() == []
        sent = [packet(i, 1 + i % 32) for i in range(64)]
        for p in sent:
            assert run(prog, p) == 0
        got = rb.drain()
        assert got == [p[:1 + i % 32] for i, p in enumerate(sent)]
        assert all(type(r) is bytes for r in got)
        assert rb.drain() == []
        assert run(prog, b"\x00" * 14) == 1000          # the program's own short-packet path
        assert rb.drain() == []


def test_wrap_around_with_consumption_in_between():
    size = PAGE_SIZE
    lengths = [1 + (i * 7) % 32 for i in range(3000)]
    # some records must straddle the end of the data area (served by the double mapping)
    pos, straddles = 0, 0
    for n in lengths:
        straddles += (pos % size) + record_size(n) > size
        pos += record_size(n)
    assert pos > 20 * size and straddles > 10

    with ring_and_prog(size) as (_, prog, rb):
        got = []
        for i, n in enumerate(lengths):
            assert run(prog, packet(i, n)) == 0, f"record {i} dropped"
            if i % 50 == 49:                             # 50 records < 2 KiB < the ring
                got += rb.drain()
        got += rb.drain()
    assert len(got) == len(lengths)
    for i, (n, record) in enumerate(zip(lengths, got)):
        assert record == packet(i, n)[:n], f"record {i}"


def test_full_ring_drops_visibly_and_never_blocks():
    size = PAGE_SIZE
    fits = size // record_size(32)       # bpf_ringbuf_reserve fails once a record would
    with ring_and_prog(size) as (_, prog, rb):   # not fit in the free space (size - used)
        start = time.monotonic()
        results = [run(prog, packet(i, 32)) for i in range(fits + 20)]
        assert time.monotonic() - start < 5
        assert results == [0] * fits + [-errno.EAGAIN] * 20
        got = rb.drain()
        assert got == [packet(i, 32)[:32] for i in range(fits)]
        # consuming freed the space
        assert run(prog, packet(999, 32)) == 0
        assert rb.drain() == [packet(999, 32)[:32]]


def test_discarded_records_are_skipped():
    def seq(i):                          # RESERVE's record: the packet's first 8 bytes
        return struct.pack("<Q", i) + bytes(PACKET - 8)

    with ring_and_prog(PAGE_SIZE, RESERVE) as (_, prog, rb):
        assert [run(prog, seq(i)) for i in range(40)] == [i % 2 for i in range(40)]
        assert rb.drain() == [seq(i)[:8] for i in range(0, 40, 2)]
        # a ring holding nothing but a discarded record: poll waits out its timeout,
        # and the record is consumed (the next submitted one is the next result)
        assert run(prog, seq(41)) == 1
        start = time.monotonic()
        assert rb.poll(0.2) == []
        assert time.monotonic() - start >= 0.19
        assert run(prog, seq(42)) == 0
        assert rb.poll(0) == [seq(42)[:8]]


# --- waiting

def test_poll_returns_empty_promptly_on_timeout():
    with ring_and_prog(PAGE_SIZE) as (_, _prog, rb):
        start = time.monotonic()
        assert rb.poll(0) == []
        assert time.monotonic() - start < 0.1
        start = time.monotonic()
        assert rb.poll(0.25) == []
        elapsed = time.monotonic() - start
        assert 0.24 <= elapsed < 1.0


def test_poll_returns_available_records_without_waiting():
    with ring_and_prog(PAGE_SIZE) as (_, prog, rb):
        assert run(prog, packet(3, 12)) == 0
        start = time.monotonic()
        assert rb.poll(10) == [packet(3, 12)[:12]]
        assert time.monotonic() - start < 1


@pytest.mark.parametrize("timeout", [10.0, None])
def test_poll_wakes_when_a_record_is_committed(timeout):
    with ring_and_prog(PAGE_SIZE) as (_, prog, rb):
        results = []
        producer = threading.Timer(0.3, lambda: results.append(run(prog, packet(5, 9))))
        start = time.monotonic()
        producer.start()
        try:
            got = rb.poll(timeout)
        finally:
            producer.join(10)
        elapsed = time.monotonic() - start
        assert results == [0]
        assert got == [packet(5, 9)[:9]]
        assert 0.25 <= elapsed < 5
