"""User-space consumer of a BPF ring buffer (BPF_MAP_TYPE_RINGBUF).

Owns: mapping a ring buffer map into this process, reading the records BPF
programs commit to it (`RingBuffer.poll`, `RingBuffer.drain`), waiting for them
with epoll, and `ringbuf_create`. Does not own: creating other maps or any other
bpf(2) command (`runtime/kernel.py`), or what the bytes of a record mean (the
caller decodes them).

Layout (kernel/bpf/ringbuf.c, Documentation/bpf/ringbuf.rst), with `size` the
map's max_entries, a power-of-two multiple of the page size:

    offset 0          one page, mapped read-write: u64 consumer_pos (ours)
    offset PAGE_SIZE  one page, mapped read-only:  u64 producer_pos (kernel's)
                      then the data area, `size` bytes mapped twice in a row, so
                      a record that runs past the end continues contiguously.

Positions only grow; a position's place in the data area is `pos & (size - 1)`.
Each record is an 8-byte header, `u32 len` (bit 31 BUSY: still being written;
bit 30 DISCARD: skip it) and `u32 pg_off` (the kernel's), then `len` payload
bytes, padded to 8 bytes. The consumer reads producer_pos, consumes the records
below it in order, stopping at a BUSY one, and stores its new consumer_pos so
the kernel can reuse the space. A full ring never blocks the producer: the
BPF helper fails (bpf_ringbuf_output returns -EAGAIN, bpf_ringbuf_reserve NULL).

Memory ordering: the kernel publishes producer_pos and clears BUSY with release
stores, so our loads of them need acquire semantics, and our consumer_pos store
must be a release (no payload read may move after it). Python has no atomic
loads; we read each of these words with one aligned native load (a memoryview
cast, which CPython reads with a single fixed-size memcpy) and order it with a
fence (`_fence_for_this_machine`): nothing on x86 (TSO: loads are not reordered
with later loads or stores, so a plain load is an acquire and a plain store a
release), elsewhere a sequentially consistent `atomic_thread_fence` from
libatomic.

Ownership: `RingBuffer` does not own the map fd it is given (the caller closes
it, after or before `RingBuffer.close()` — the mappings keep the map alive until
then). It owns its two mmaps (each holds a dup of the fd, closed with it) and
its epoll fd, all released by `close()` or by leaving a `with` block.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import platform
import select
import time
from functools import cache

from luabpf.compiler.bpf.uapi import (BPF_RINGBUF_BUSY_BIT as BUSY,
                                      BPF_RINGBUF_DISCARD_BIT as DISCARD,
                                      BPF_RINGBUF_HDR_SZ as HDR_SIZE, MapType)
from luabpf.runtime import kernel

__all__ = ["RingBuffer", "ringbuf_create", "check_size"]

PAGE_SIZE = mmap.PAGESIZE


def check_size(size: int) -> None:
    """Raise ValueError unless `size` is a valid ring buffer size."""
    if not isinstance(size, int) or size < PAGE_SIZE or size & (size - 1):
        raise ValueError(f"ring buffer size must be a power of two and a multiple of the "
                         f"page size ({PAGE_SIZE}), got {size!r}")


def ringbuf_create(size: int, name: str = "") -> kernel.Fd:
    """A new BPF_MAP_TYPE_RINGBUF of `size` bytes; the caller owns the fd."""
    check_size(size)
    return kernel.map_create(MapType.RINGBUF, 0, 0, size, name=name)


@cache
def _fence_for_this_machine():
    if platform.machine() in ("x86_64", "amd64", "i386", "i686"):
        return lambda: None
    path = ctypes.util.find_library("atomic")
    fence = getattr(ctypes.CDLL(path), "atomic_thread_fence", None) if path else None
    if fence is None:
        raise OSError(f"reading a BPF ring buffer on {platform.machine()} needs "
                      "atomic_thread_fence from libatomic (libatomic1)")
    fence.argtypes, fence.restype = [ctypes.c_int], None
    return lambda: fence(5)            # memory_order_seq_cst


class RingBuffer:
    """Consumer of the ring buffer map `fd` of `size` bytes (its max_entries)."""

    def __init__(self, fd: int, size: int):
        check_size(size)
        info = kernel.map_info(fd)
        if info["type"] != MapType.RINGBUF or info["max_entries"] != size:
            raise ValueError(f"fd {int(fd)} is not a ring buffer of {size} bytes "
                             f"(map type {info['type']}, max_entries {info['max_entries']})")
        self._opened: list = []            # closed in reverse order by close()
        try:
            cons_page = self._keep(mmap.mmap(fd, PAGE_SIZE, mmap.MAP_SHARED,
                                             mmap.PROT_READ | mmap.PROT_WRITE, offset=0))
            data = self._keep(mmap.mmap(fd, PAGE_SIZE + 2 * size, mmap.MAP_SHARED,
                                        mmap.PROT_READ, offset=PAGE_SIZE))
            self._view(cons_page, data, size)
            self._epoll = self._keep(select.epoll())
            self._epoll.register(fd, select.EPOLLIN)
        except BaseException:
            self.close()
            raise

    def _view(self, cons_page: mmap.mmap, data: mmap.mmap, size: int) -> None:
        """Read the ring through `cons_page` (the consumer page) and `data` (the
        producer page and the data area twice); the caller owns the mmaps."""
        self.size = size
        self._mask = size - 1
        self._fence = _fence_for_this_machine()
        self._data = data
        self._cons = self._keep(memoryview(cons_page).cast("Q"))     # [0]: consumer_pos
        self._prod = self._keep(memoryview(data).cast("Q"))          # [0]: producer_pos
        self._words = self._keep(memoryview(data).cast("I"))         # record headers

    def _keep(self, obj):
        self._opened.append(obj)
        return obj

    def drain(self) -> list[bytes]:
        """The payloads of the committed records available now, oldest first,
        without waiting. Discarded records are skipped; a record still being
        written (BUSY) and everything after it waits for a later call."""
        if not self._opened:
            raise ValueError("ring buffer is closed")
        out = []
        cons = self._cons[0]
        prod = self._prod[0]
        self._fence()                              # acquire producer_pos
        while cons < prod:
            start = PAGE_SIZE + (cons & self._mask)
            header = self._words[start // 4]
            self._fence()                          # acquire the record's header
            if header & BUSY:
                break
            length = header & ~(BUSY | DISCARD)
            if not header & DISCARD:
                out.append(self._data[start + HDR_SIZE:start + HDR_SIZE + length])
            cons += (HDR_SIZE + length + 7) & ~7
            self._fence()                          # release: payload read before the store
            self._cons[0] = cons
        return out

    def poll(self, timeout: float | None = None) -> list[bytes]:
        """Like `drain`, but when nothing is available wait up to `timeout`
        seconds (None: without limit) for records; [] if none came."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            records = self.drain()
            if records:
                return records
            left = -1 if deadline is None else deadline - time.monotonic()
            if deadline is not None and left <= 0:
                return []
            # EPOLLIN means producer_pos != consumer_pos: a committed, discarded
            # or still-BUSY record; the loop drains again and waits for the rest.
            self._epoll.poll(left)

    def close(self) -> None:
        """Unmap the ring and close the epoll fd (not the map fd). Idempotent."""
        while self._opened:
            obj = self._opened.pop()
            if isinstance(obj, memoryview):
                obj.release()
            else:
                obj.close()

    def __enter__(self) -> "RingBuffer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
