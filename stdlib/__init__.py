"""The kernel-Lua modules luabpf ships (`net.lua`: header layouts, `cpufreq.lua`: the policy
library), and `source(name)`, the one reader of them."""
from __future__ import annotations

import os

DIRECTORY = os.path.dirname(os.path.abspath(__file__))


def source(name: str) -> str:
    """The text of the shipped module `name` (for example 'net.lua')."""
    with open(os.path.join(DIRECTORY, name), encoding="utf-8") as f:
        return f.read()
