"""The command line's attach targets (`--xdp DEV`, `--tc DEV[:ingress|:egress]`), parsed by
runtime/attach. (Attaching is tests/kernel/test_attach.py.)"""
from __future__ import annotations

import pytest

from luabpf.runtime.attach import Target, parse_target


def test_parse_target():
    assert parse_target("xdp", "eth0") == Target("xdp", "eth0", "ingress")
    assert parse_target("tc", "eth0") == Target("tc", "eth0", "ingress")
    assert parse_target("tc", "eth0:egress") == Target("tc", "eth0", "egress")
    for hook, bad in [("tc", "eth0:sideways"), ("xdp", "eth0:egress"), ("tc", ":egress"),
                      ("xdp", "a" * 16)]:
        with pytest.raises(ValueError):
            parse_target(hook, bad)
