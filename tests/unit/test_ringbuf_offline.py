"""The ring buffer consumer (runtime/ringbuf.py) where no kernel is needed: sizes refused
before any bpf(2) call, and the record header rules on a ring laid out by hand in
anonymous memory. (Rings the kernel writes are tests/kernel/test_ringbuf.py.)"""
from __future__ import annotations

import mmap
import struct

import pytest

from luabpf.runtime import ringbuf
from luabpf.runtime.ringbuf import PAGE_SIZE, RingBuffer, ringbuf_create


@pytest.mark.parametrize("size", [0, PAGE_SIZE // 2, PAGE_SIZE + 8, 3 * PAGE_SIZE, -PAGE_SIZE])
def test_bad_sizes_are_value_errors(size):
    with pytest.raises(ValueError, match="power of two"):
        ringbuf_create(size)
    with pytest.raises(ValueError, match="power of two"):
        RingBuffer(0, size)                 # rejected before the fd is looked at


def test_busy_record_stops_the_consumer():
    size = PAGE_SIZE
    cons_page, data = mmap.mmap(-1, PAGE_SIZE), mmap.mmap(-1, PAGE_SIZE + 2 * size)
    rb = RingBuffer.__new__(RingBuffer)
    rb._opened = []
    rb._view(cons_page, data, size)
    try:
        def put(pos, header, payload):
            struct.pack_into("<II", data, PAGE_SIZE + pos, header, 0)
            data[PAGE_SIZE + pos + 8:PAGE_SIZE + pos + 8 + len(payload)] = payload

        put(0, 3, b"abc")                                # committed, 16 bytes
        put(16, 5 | ringbuf.DISCARD, b"xxxxx")           # discarded, 16 bytes
        put(32, 2 | ringbuf.BUSY, b"zz")                 # still being written
        put(48, 4, b"late")                              # committed after the busy one
        struct.pack_into("<Q", data, 0, 64)              # producer_pos
        assert rb.drain() == [b"abc"]
        assert struct.unpack_from("<Q", cons_page)[0] == 32     # stopped at the busy record
        assert rb.drain() == []
        put(32, 2, b"zz")                                # committed
        assert rb.drain() == [b"zz", b"late"]
        assert struct.unpack_from("<Q", cons_page)[0] == 64
    finally:
        rb.close()
        cons_page.close()
        data.close()
