"""What runtime/tracefs.py and runtime/attach/perf.py read and lay out, on fixed text: a
tracepoint format file, a CPU list, the perf_event_attr and BPF_LINK_CREATE structs.
(Formats of this machine's tracefs, timers and tracepoint programs are
tests/kernel/test_perf.py.)"""
from __future__ import annotations

import json

import pytest

from luabpf.runtime import tracefs
from luabpf.runtime.attach import perf

SAMPLE = """\
name: sample_event
ID: 1234
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:char comm[16];\toffset:16;\tsize:16;\tsigned:0;
\tfield:const char * name;\toffset:32;\tsize:8;\tsigned:0;
\tfield:__rel_loc u64[] addrs;\toffset:40;\tsize:4;\tsigned:0;
\tfield:unsigned long args[];\toffset:48;\tsize:0;\tsigned:0;
\tfield:u8 mac[ETH_ALEN];\toffset:48;\tsize:6;\tsigned:0;
\tfield:long delta;\toffset:56;\tsize:8;

print fmt: "filename=%s pid=%d", __get_str(filename), REC->pid
"""


def test_parse_format_sample_text():
    fmt = tracefs.parse_format(SAMPLE)
    assert (fmt.name, fmt.id, fmt.category) == ("sample_event", 1234, None)
    assert fmt.print_fmt == '"filename=%s pid=%d", __get_str(filename), REC->pid'
    assert [f.name for f in fmt.common_fields] == \
        ["common_type", "common_flags", "common_preempt_count", "common_pid"]
    assert [f.name for f in fmt.event_fields] == \
        ["filename", "pid", "comm", "name", "addrs", "args", "mac", "delta"]
    f = {x.name: x for x in fmt.fields}
    assert (f["common_pid"].offset, f["common_pid"].size, f["common_pid"].signed) == (4, 4, True)
    assert f["common_type"].type == "unsigned short" and not f["common_type"].signed
    fn = f["filename"]
    assert (fn.type, fn.offset, fn.size, fn.data_loc, fn.rel_loc, fn.dynamic, fn.is_array,
            fn.array_len, fn.common) == ("char", 8, 4, True, False, True, True, None, False)
    assert fn.decl == "__data_loc char[] filename"
    pid = f["pid"]
    assert (pid.type, pid.offset, pid.size, pid.signed, pid.is_array, pid.dynamic) == \
        ("pid_t", 12, 4, True, False, False)
    comm = f["comm"]
    assert (comm.type, comm.is_array, comm.array_len, comm.size, comm.dynamic) == \
        ("char", True, 16, 16, False)
    assert (f["name"].type, f["name"].size, f["name"].is_array) == ("const char *", 8, False)
    assert (f["addrs"].type, f["addrs"].rel_loc, f["addrs"].data_loc, f["addrs"].dynamic) == \
        ("u64", True, False, True)
    assert (f["args"].type, f["args"].is_array, f["args"].array_len, f["args"].size) == \
        ("unsigned long", True, None, 0)
    assert (f["mac"].is_array, f["mac"].array_len) == (True, None)     # an unexpanded macro
    assert f["delta"].signed is False                                  # no "signed:" given
    assert fmt.size == 64
    assert fmt.field("pid") is pid and "pid" in fmt and "nope" not in fmt
    with pytest.raises(tracefs.TracefsError, match=r"has no field 'pdi' \(did you mean 'pid'"):
        fmt.field("pdi")
    assert json.loads(json.dumps(fmt.as_dict()))["fields"][4]["data_loc"] is True


def test_parse_format_marks_common_fields_by_name_without_a_blank_line():
    text = SAMPLE.replace("\n\n", "\n", 1)
    fmt = tracefs.parse_format(text)
    assert [f.name for f in fmt.common_fields] == \
        ["common_type", "common_flags", "common_preempt_count", "common_pid"]


@pytest.mark.parametrize("text, message", [
    (SAMPLE.replace("ID: 1234\n", ""), "has no 'ID:' line"),
    (SAMPLE.replace("name: sample_event\n", ""), "has no 'name:' line"),
    (SAMPLE.replace("\tfield:pid_t pid;", "\tfield pid_t pid;"), "line 10 .* is not a field"),
    (SAMPLE.replace("offset:12;\tsize:4;", "offset:12;"), "has no offset or size"),
])
def test_parse_format_rejects_broken_text(text, message):
    with pytest.raises(tracefs.TracefsError, match=message):
        tracefs.parse_format(text)


@pytest.mark.parametrize("field, offset", [
    ("config", 8), ("sample_period", 16), ("sample_type", 24), ("flags", 40),
    ("wakeup_events", 48), ("bp_type", 52), ("config1", 56), ("config2", 64),
    ("branch_sample_type", 72), ("sample_stack_user", 88), ("clockid", 92),
    ("sample_regs_intr", 96), ("aux_watermark", 104), ("sample_max_stack", 108),
    ("aux_sample_size", 112), ("aux_action", 116), ("sig_data", 120), ("config3", 128),
])
def test_perf_event_attr_layout(field, offset):
    # include/uapi/linux/perf_event.h; PERF_ATTR_SIZE_VER8 is 136
    assert getattr(perf.PerfEventAttr, field).offset == offset
    import ctypes
    assert ctypes.sizeof(perf.PerfEventAttr) == perf.PERF_ATTR_SIZE_VER8 == 136


def test_parse_cpu_list():
    assert perf.parse_cpu_list("0-3,6,8-9\n") == [0, 1, 2, 3, 6, 8, 9]
    assert perf.parse_cpu_list("0") == [0]
