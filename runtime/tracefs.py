"""Tracepoint formats from tracefs: what a tracepoint's record looks like.

Owns reading /sys/kernel/tracing/events/CATEGORY/EVENT/format (mounting
tracefs first through `features.ensure_tracefs()`), parsing its text
(`parse_format`, pure, testable on any text), and listing the events there
(`categories`, `events`). Does not own attaching programs to tracepoints
(`runtime/attach/perf.py`).

The format file (kernel/trace/trace_events.c, f_show) is:

    name: sched_switch
    ID: 372
    format:
    \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
    ...                                    <- the common fields, then a blank line
    \tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
    \tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
    ...
    print fmt: "...", REC->prev_comm, ...

Offsets are from the start of the record, which is also what a
BPF_PROG_TYPE_TRACEPOINT program's context points to (the common fields
included): a program reads `next_pid` at `ctx + field.offset`.

A `__data_loc` field is a u32 at `offset`: its low 16 bits are where the
data starts (from the start of the record), its high 16 bits the data's
length in bytes. A `__rel_loc` field is the same, but the start is counted
from the end of the u32 field itself. `size` is that of the u32 (4).
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass

from luabpf.runtime import features

__all__ = ["TracefsError", "Field", "EventFormat", "parse_format", "event_format",
           "categories", "events", "events_dir"]


class TracefsError(Exception):
    """A tracepoint or its format could not be found or read; str() is one
    sentence for the user."""


@dataclass(frozen=True)
class Field:
    """One field of a tracepoint record.

    `type` is the C type of the field, or of one element of an array field,
    without the array brackets and without `__data_loc` ("char", "pid_t",
    "unsigned long", "const char *"); `decl` is the declaration as the format
    file wrote it ("__data_loc char[] filename", "char prev_comm[16]").
    `is_array`: declared with brackets; `array_len` the number of elements
    when the brackets hold a number (None for `[]` and for dynamic fields).
    `data_loc` / `rel_loc`: a dynamic field (see the module docstring);
    `dynamic` is either. `common`: one of the common_* fields every record
    starts with."""
    name: str
    type: str
    offset: int
    size: int
    signed: bool
    is_array: bool = False
    array_len: int | None = None
    data_loc: bool = False
    rel_loc: bool = False
    common: bool = False
    decl: str = ""

    @property
    def dynamic(self) -> bool:
        return self.data_loc or self.rel_loc

    def as_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "offset": self.offset, "size": self.size,
                "signed": self.signed, "is_array": self.is_array, "array_len": self.array_len,
                "data_loc": self.data_loc, "rel_loc": self.rel_loc, "common": self.common,
                "decl": self.decl}


@dataclass(frozen=True)
class EventFormat:
    """A parsed format file: `name`, `id` (the value of PERF_TYPE_TRACEPOINT's
    `config`), `fields` in file order (common ones first), `print_fmt` (the
    text after "print fmt: ") and `category` (None when parsed from text
    alone)."""
    name: str
    id: int
    fields: tuple[Field, ...]
    print_fmt: str = ""
    category: str | None = None

    @property
    def common_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.common)

    @property
    def event_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if not f.common)

    @property
    def size(self) -> int:
        """The size of the fixed part of the record (dynamic data follows it)."""
        return max((f.offset + f.size for f in self.fields), default=0)

    def field(self, name: str) -> Field:
        """The field called `name`; TracefsError naming close names when there is none."""
        for f in self.fields:
            if f.name == name:
                return f
        names = [f.name for f in self.fields]
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {_or(close)}?)" if close else \
            f" (its fields: {', '.join(f.name for f in self.event_fields)})"
        raise TracefsError(f"tracepoint {self.qualified} has no field {name!r}{hint}")

    def __contains__(self, name: str) -> bool:
        return any(f.name == name for f in self.fields)

    @property
    def qualified(self) -> str:
        return f"{self.category}:{self.name}" if self.category else self.name

    def as_dict(self) -> dict:
        return {"category": self.category, "name": self.name, "id": self.id,
                "fields": [f.as_dict() for f in self.fields], "print_fmt": self.print_fmt}


# ---------------------------------------------------------------------------
# Parsing

_FIELD = re.compile(r"\s*field(?: special)?:(?P<decl>[^;]*);(?P<attrs>.*)")
_ATTR = re.compile(r"\s*(\w+):\s*(-?\w+);")
_DECL = re.compile(r"(?P<type>.*?[^\s\[\]])\s*(?P<brackets1>\[[^\]]*\])?\s*"
                   r"\b(?P<name>[A-Za-z_]\w*)\s*(?P<brackets2>\[[^\]]*\])?")


def _field(decl: str, attrs: dict[str, str], common: bool, lineno: int) -> Field:
    text = decl.strip()
    data_loc = rel_loc = False
    rest = text
    for prefix in ("__data_loc", "__rel_loc"):
        if rest.startswith(prefix + " "):
            data_loc, rel_loc = prefix == "__data_loc", prefix == "__rel_loc"
            rest = rest[len(prefix):].strip()
    m = _DECL.fullmatch(rest)
    if not m:
        raise TracefsError(f"line {lineno} of the format text: cannot read the "
                           f"declaration {text!r}")
    brackets = m.group("brackets1") or m.group("brackets2")
    ctype = m.group("type").strip()
    if not brackets and ctype.endswith("]"):        # "char[]" glued to the type
        i = ctype.rindex("[")
        ctype, brackets = ctype[:i].strip(), ctype[i:]
    array_len = None
    if brackets:
        inner = brackets[1:-1].strip()
        if inner and not (data_loc or rel_loc):
            try:
                array_len = int(inner, 0)
            except ValueError:
                array_len = None            # a macro name the kernel did not expand
    try:
        offset, size = int(attrs["offset"]), int(attrs["size"])
    except (KeyError, ValueError):
        raise TracefsError(f"line {lineno} of the format text: the field {text!r} "
                           f"has no offset or size") from None
    return Field(name=m.group("name"), type=ctype, offset=offset, size=size,
                 signed=attrs.get("signed", "0") not in ("0", ""), is_array=bool(brackets),
                 array_len=array_len, data_loc=data_loc, rel_loc=rel_loc, common=common,
                 decl=text)


def parse_format(text: str, category: str | None = None) -> EventFormat:
    """Parse the text of a tracefs `format` file. Fields before the first
    blank line after "format:" are the common ones (every record's header);
    if the text has no blank line there, fields named common_* are."""
    name, event_id, print_fmt = None, None, ""
    raw: list[tuple[str, dict, int, bool]] = []     # decl, attrs, lineno, after a blank line
    in_format = blank_seen = False
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("print fmt:"):
            print_fmt = stripped[len("print fmt:"):].strip()
            in_format = False
            continue
        if not in_format:
            if stripped.startswith("name:"):
                name = stripped[len("name:"):].strip()
            elif stripped.startswith("ID:"):
                try:
                    event_id = int(stripped[3:].strip())
                except ValueError:
                    raise TracefsError(f"line {lineno} of the format text: the ID "
                                       f"{stripped[3:].strip()!r} is not a number") from None
            elif stripped == "format:":
                in_format = True
            continue
        if not stripped:
            if raw:
                blank_seen = True
            continue
        m = _FIELD.fullmatch(line)
        if not m:
            raise TracefsError(f"line {lineno} of the format text is not a field: {stripped!r}")
        attrs = dict(_ATTR.findall(m.group("attrs")))
        raw.append((m.group("decl"), attrs, lineno, blank_seen))
    if name is None:
        raise TracefsError("the format text has no 'name:' line")
    if event_id is None:
        raise TracefsError(f"the format text of {name} has no 'ID:' line")
    split = any(after for *_, after in raw)
    fields = []
    for decl, attrs, lineno, after in raw:
        f = _field(decl, attrs, False, lineno)
        common = not after if split else f.name.startswith("common_")
        fields.append(Field(**{**f.__dict__, "common": common}))
    return EventFormat(name=name, id=event_id, fields=tuple(fields), print_fmt=print_fmt,
                       category=category)


# ---------------------------------------------------------------------------
# tracefs


def events_dir() -> str:
    """/sys/kernel/tracing/events (mounting tracefs if need be)."""
    try:
        root = features.ensure_tracefs()
    except OSError as e:
        raise TracefsError(f"tracefs is not mounted and cannot be ({e.strerror or e}); "
                           "tracepoints need it") from None
    return os.path.join(root, "events")


def _check_name(what: str, name: str) -> None:
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise TracefsError(f"{name!r} is not a tracepoint {what} name")


def _subdirs(path: str) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(path) if e.is_dir())
    except FileNotFoundError:
        return []
    except PermissionError:
        raise TracefsError(f"cannot read {path}: permission denied (tracefs is root's: run luabpf as "
                           "root, or give it CAP_DAC_READ_SEARCH)") from None


def categories() -> list[str]:
    """Every tracepoint category (subsystem), sorted: "sched", "syscalls" …"""
    return _subdirs(events_dir())


def _or(names: list[str]) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _unknown_category(category: str) -> TracefsError:
    close = difflib.get_close_matches(category, categories(), n=3)
    hint = f" (did you mean {_or(close)}?)" if close else ""
    return TracefsError(f"there is no tracepoint category {category!r} in "
                        f"{events_dir()}{hint}")


def events(category: str | None = None) -> list[tuple[str, str]]:
    """(category, event) for every tracepoint, or for those of `category`,
    sorted. TracefsError for an unknown category."""
    root = events_dir()
    if category is not None:
        _check_name("category", category)
        if not os.path.isdir(os.path.join(root, category)):
            raise _unknown_category(category)
        cats = [category]
    else:
        cats = _subdirs(root)
    return [(c, e) for c in cats for e in _subdirs(os.path.join(root, c))]


def _unknown_event(category: str, event: str) -> TracefsError:
    root = events_dir()
    close = difflib.get_close_matches(event, _subdirs(os.path.join(root, category)), n=3)
    if close:
        hint = f" (did you mean {_or(close)}?)"
    else:
        elsewhere = [c for c in _subdirs(root) if os.path.isdir(os.path.join(root, c, event))]
        hint = f" (it is in {_or([f'{c}:{event}' for c in elsewhere])})" if elsewhere else ""
    return TracefsError(f"there is no tracepoint {category}:{event}{hint}")


def event_format(category: str, event: str) -> EventFormat:
    """The parsed format of tracepoint CATEGORY:EVENT; TracefsError (one
    sentence, with close names when there are some) when there is none."""
    _check_name("category", category)
    _check_name("event", event)
    root = events_dir()
    if not os.path.isdir(os.path.join(root, category)):
        raise _unknown_category(category)
    path = os.path.join(root, category, event, "format")
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise _unknown_event(category, event) from None
    except PermissionError:
        raise TracefsError(f"cannot read {path}: permission denied (tracefs is root's: run luabpf as "
                           "root, or give it CAP_DAC_READ_SEARCH)") from None
    except OSError as e:
        raise TracefsError(f"cannot read {path}: {e.strerror or e}") from None
    return parse_format(text, category)
