"""What user space sees of a running program: maps, globals, events, error counts.

Owns `ProgramState`, built from the program's map fds and its manifest
(`CompiledProgram.manifest()`). A program this process loaded (`load.LoadedProgram`)
and one another process pinned (`pins.open_running`) expose the same state the
same way. It never closes the fds it is given; it closes what it opened itself
(the globals' mapping, the event stream).
"""
from __future__ import annotations

import struct

from luabpf.compiler.lib.events import EVENTS_SIZE
from luabpf.runtime import kernel
from luabpf.runtime.events import EventStream
from luabpf.runtime.mapview import GlobalsView, MapView

GLOBALS_MAP, ERRORS_MAP, EVENTS_MAP = "luabpf_globals", "luabpf_errors", "luabpf_events"
VERDICTS_MAP = "luabpf_verdicts"


class ProgramState:
    def __init__(self, map_fds: dict[str, int], manifest: dict):
        self.map_fds = map_fds
        self.manifest = manifest
        self.maps = {name: MapView(map_fds[name], name, m["kind"], m["max_entries"])
                     for name, m in manifest["maps"].items() if name in map_fds}
        self._globals: GlobalsView | None = None
        self._events = None

    @property
    def globals(self) -> GlobalsView:
        """The script's globals by name (empty when it has none)."""
        if self._globals is None:
            fd = self.map_fds.get(GLOBALS_MAP)
            layout = self.manifest["globals"]
            if fd is None:
                self._globals = GlobalsView.empty()
            else:
                size = 8 * (len(layout) + 1)
                self._globals = GlobalsView(fd, layout, size)
        return self._globals

    def events(self):
        """The stream of the script's print events (runtime.events.EventStream); None when
        the script never prints."""
        if self._events is None and EVENTS_MAP in self.map_fds:
            self._events = EventStream(self.map_fds[EVENTS_MAP], EVENTS_SIZE, self.manifest)
        return self._events

    def error_counts(self) -> dict[int, int]:
        """Runtime errors and drops counted so far, by site."""
        fd = self.map_fds.get(ERRORS_MAP)
        if fd is None:
            return {}
        counts = {}
        for site in range(len(self.manifest["sites"])):
            raw = kernel.map_lookup(fd, struct.pack("<I", site), 8)
            n = struct.unpack("<Q", raw)[0] if raw else 0
            if n:
                counts[site] = n
        return counts

    def verdict_counts(self) -> dict[str, int]:
        """How often the filter returned each verdict ({'XDP_PASS': 1234, …}, summed over
        CPUs); empty unless it was compiled with count_verdicts."""
        fd = self.map_fds.get(VERDICTS_MAP)
        names = self.manifest.get("verdicts", [])
        if fd is None or not names:
            return {}
        view = MapView(fd, VERDICTS_MAP, "percpu_array", len(names))
        return {name: view[i] for i, name in enumerate(names) if view[i]}

    def describe_errors(self) -> list[str]:
        """['f.lua:LINE: message (N times)', …] for every site counted so far."""
        out = []
        for site, n in sorted(self.error_counts().items()):
            s = self.manifest["sites"][site]
            out.append(f"{s.get('file') or self.manifest['file']}:{s['line']}: {s['message']} "
                       f"({n} time{'s' if n != 1 else ''})")
        return out

    def close(self) -> None:
        if self._globals is not None:
            self._globals.close()
            self._globals = None
        if self._events is not None:
            self._events.close()
            self._events = None


class StateViews:
    """What a running program shows, for classes that hold a `state` (ProgramState): a
    program loaded here (runtime.load.LoadedScript) or one opened from its pins."""

    @property
    def maps(self):
        """The script's maps by name: dict-like views (runtime.mapview.MapView)."""
        return self.state.maps

    @property
    def globals(self):
        """The script's globals by name, read and written live (runtime.mapview.GlobalsView)."""
        return self.state.globals

    def events(self):
        """The stream of print events (runtime.events.EventStream), None without print."""
        return self.state.events()

    def error_counts(self) -> dict[int, int]:
        return self.state.error_counts()

    def verdict_counts(self) -> dict[str, int]:
        """{'XDP_PASS': n, …}: a filter compiled with count_verdicts counts what it returns."""
        return self.state.verdict_counts()

    def describe_errors(self) -> list[str]:
        """The runtime errors counted so far: ['f.lua:LINE: message (N times)', …]."""
        return self.state.describe_errors()
