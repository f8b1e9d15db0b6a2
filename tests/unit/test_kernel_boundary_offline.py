"""The bpf(2) attr structs of runtime/kernel.py, laid out as include/uapi/linux/bpf.h lays
them out (Linux 6.18): each field at the kernel's offset. (The calls themselves, against
the running kernel, are tests/kernel/test_kernel_boundary.py.)"""
from __future__ import annotations

import pytest

from luabpf.runtime import kernel


@pytest.mark.parametrize("struct_, field, offset", [
    (kernel._ProgLoadAttr, "insns", 8), (kernel._ProgLoadAttr, "log_buf", 32),
    (kernel._ProgLoadAttr, "prog_name", 48), (kernel._ProgLoadAttr, "expected_attach_type", 68),
    (kernel._ProgLoadAttr, "func_info", 80), (kernel._ProgLoadAttr, "line_info", 96),
    (kernel._ProgLoadAttr, "attach_btf_id", 108), (kernel._ProgLoadAttr, "fd_array", 120),
    (kernel._ProgLoadAttr, "log_true_size", 140), (kernel._ProgLoadAttr, "fd_array_cnt", 148),
    (kernel._MapCreateAttr, "map_name", 28), (kernel._MapCreateAttr, "btf_value_type_id", 56),
    (kernel._MapCreateAttr, "map_extra", 64), (kernel._MapElemAttr, "key", 8),
    (kernel._MapElemAttr, "flags", 24), (kernel._TestRunAttr, "data_in", 16),
    (kernel._TestRunAttr, "repeat", 32), (kernel._TestRunAttr, "ctx_in", 48),
    (kernel._TestRunAttr, "batch_size", 72), (kernel._ObjAttr, "file_flags", 12),
    (kernel._BtfLoadAttr, "btf_log_true_size", 28), (kernel._ProgInfo, "name", 64),
    (kernel._ProgInfo, "run_time_ns", 192), (kernel._ProgInfo, "verified_insns", 216),
    (kernel._MapInfo, "map_extra", 80),
])
def test_attr_layout(struct_, field, offset):
    assert getattr(struct_, field).offset == offset
