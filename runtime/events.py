"""Events of `print(...)`, read from the program's ring buffer and decoded.

Owns the user-space half of `compiler/lib/events.py`'s record format: an `EventStream`
polls the ring buffer and turns each record into an `Event` whose text is what
Lua's print would write (values joined by tabs), and whose `render()` is
`file.lua:LINE: text`. A text value (`..`, `string.format`) is rendered from its
template and its values by `compiler/lib/text.py`, Lua 5.4's rules. Decoding uses the program's manifest only, so it serves
a program loaded here and one pinned by another process alike.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from luabpf.compiler.lib import text
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
    error_site: int | None = None    # the message of this runtime error, not a print

    @property
    def text(self) -> str:
        return "\t".join(lua_text(v) for v in self.values)

    def render(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"

    def as_json(self) -> dict:
        if self.error_site is not None:
            return {"event": "error", "file": self.file, "line": self.line, "text": self.text}
        return {"event": "print", "file": self.file, "line": self.line,
                "values": list(self.values), "text": self.text}


def decode(record: bytes, manifest: dict) -> Event:
    site_id, absent = HEADER.unpack_from(record, 0)
    site = manifest["prints"][site_id]
    values, off = [], HEADER.size

    def slot(kind: str):
        nonlocal off
        tag, payload = SLOT.unpack_from(record, off)
        off += SLOT.size
        if kind == "bytes":                 # a packet string: payload is how many bytes came
            data = record[off:off + payload]
            off += MAX_BYTES
            return None if tag == NIL else data
        return None if tag == NIL else tag == TRUE if tag in (FALSE, TRUE) else payload

    for spec in site["values"]:
        if spec[0] == "const":
            values.append(spec[1])
        elif spec[0] == "text":             # rendered here with Lua's rules
            parts = [slot("bytes" if p[0] == "bytes" else "run") for p in spec[1] if p[0] != "lit"]
            values.append(text.render(spec[1], parts).decode("utf-8", "replace"))
        else:
            v = slot(spec[0])
            values.append(v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
    if absent:                              # the last values this print did not get
        values = values[:len(values) - absent]
    return Event(site.get("file") or manifest["file"], site["line"], tuple(values),
                 site.get("error_site"))


class EventStream:
    """The print events of one program, in the order the kernel committed them."""

    def __init__(self, fd: int, size: int, manifest: dict):
        self.manifest = manifest
        self.ring = RingBuffer(fd, size)
        self._pending: list[Event] = []      # read by error_message, not yet polled

    def poll(self, timeout: float | None = 0.0) -> list[Event]:
        """The events there are now, waiting up to `timeout` seconds for the first (the
        message of a runtime error made of run-time values is an event too)."""
        got, self._pending = self._pending, []
        return got + [decode(r, self.manifest)
                      for r in self.ring.poll(0 if got else timeout)]

    def error_message(self, site_id: int) -> str | None:
        """The message the last error at site_id sent (None when none came: the record was
        dropped); the events read meanwhile stay for `poll`."""
        self._pending += [decode(r, self.manifest) for r in self.ring.poll(0)]
        sent = [e for e in self._pending if e.error_site == site_id]
        return sent[-1].text if sent else None

    def close(self) -> None:
        self.ring.close()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
