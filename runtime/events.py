"""Events of `print(...)`, read from the program's ring buffer and decoded.

Owns the user-space half of `compiler/lib/events.py`'s record format: an `EventStream`
polls the ring buffer and turns each record into an `Event` whose text is what
Lua's print would write (values joined by tabs), and whose `render()` is
`file.lua:LINE: text`. Decoding uses the program's manifest only, so it serves
a program loaded here and one pinned by another process alike.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from luabpf.compiler.lib.events import MAX_BYTES, lua_text
from luabpf.compiler.lower.values import FALSE, NIL, TRUE
from luabpf.runtime.ringbuf import RingBuffer

HEADER = struct.Struct("<II")
SLOT = struct.Struct("<qq")


@dataclass(frozen=True)
class Event:
    file: str
    line: int
    values: tuple            # None, bool, int or (a constant string) str per printed value

    @property
    def text(self) -> str:
        return "\t".join(lua_text(v) for v in self.values)

    def render(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"

    def as_json(self) -> dict:
        return {"event": "print", "file": self.file, "line": self.line,
                "values": list(self.values), "text": self.text}


def decode(record: bytes, manifest: dict) -> Event:
    site_id, absent = HEADER.unpack_from(record, 0)
    site = manifest["prints"][site_id]
    values, off = [], HEADER.size
    for spec in site["values"]:
        if spec[0] == "const":
            values.append(spec[1])
            continue
        tag, payload = SLOT.unpack_from(record, off)
        off += SLOT.size
        if spec[0] == "bytes":              # a packet string: payload is how many bytes came
            text = record[off:off + payload].decode("utf-8", "replace")
            values.append(None if tag == NIL else text)
            off += MAX_BYTES
            continue
        values.append(None if tag == NIL else tag == TRUE if tag in (FALSE, TRUE) else payload)
    if absent:                              # the last values this print did not get
        values = values[:len(values) - absent]
    return Event(site.get("file") or manifest["file"], site["line"], tuple(values))


class EventStream:
    """The print events of one program, in the order the kernel committed them."""

    def __init__(self, fd: int, size: int, manifest: dict):
        self.manifest = manifest
        self.ring = RingBuffer(fd, size)

    def poll(self, timeout: float | None = 0.0) -> list[Event]:
        """The events there are now, waiting up to `timeout` seconds for the first."""
        return [decode(r, self.manifest) for r in self.ring.poll(timeout)]

    def close(self) -> None:
        self.ring.close()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
