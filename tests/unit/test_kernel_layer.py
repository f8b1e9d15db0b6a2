"""One syscall layer and one module of kernel constants, checked on the source tree
(no kernel):

- only runtime/kernel.py calls bpf(2): no other module, tests included, reaches one of its
  private names (`kernel._bpf`, `kernel._fail`, its `_…Attr` structures);
- only compiler/bpf/uapi.py declares the kernel's numbers: no other module assigns a
  PROG_TYPE_/MAP_TYPE_/BPF_F_/XDP_FLAGS_ name or any other name uapi.py declares
  (XDP_PASS, TC_ACT_SHOT, BPF_ANY …), or defines a class named like one of its enums;
  pseudo sources (PSEUDO_*) are compiler/bpf/opcode.py's, helper ids (BPF_FUNC_*)
  compiler/bpf/helpers.py's;
- the structures kernel.py passes to bpf(2) are laid out as include/uapi/linux/bpf.h
  (Linux 6.18) lays them out.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from luabpf.runtime import kernel

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".venv", "build", "dist", "__pycache__", ".git"}
KERNEL = "runtime/kernel.py"
UAPI = "compiler/bpf/uapi.py"
KERNEL_MODULE = "luabpf.runtime.kernel"

PREFIXES = ("PROG_TYPE_", "MAP_TYPE_", "BPF_F_", "XDP_FLAGS_", "BPF_FUNC_", "BPF_PSEUDO_", "PSEUDO_")
OWNER_OF_PREFIX = {"PSEUDO_": "compiler/bpf/opcode.py", "BPF_PSEUDO_": "compiler/bpf/opcode.py",
                   "BPF_FUNC_": "compiler/bpf/helpers.py"}

# Declarations in modules other helpers of this change are switching to uapi.py; each
# entry must still be there (else this list is stale: remove the entry), and the list
# ends empty.


def sources() -> list[tuple[str, ast.Module]]:
    out = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in files:
            if name.endswith(".py"):
                path = Path(folder, name)
                out.append((path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), str(path))))
    return sorted(out, key=lambda pair: pair[0])


def private_kernel_uses(tree: ast.Module, rel: str) -> list[str]:
    """`kernel._name` (under any name the module gives runtime/kernel.py), `from
    luabpf.runtime.kernel import _name` and `getattr(kernel, "_name")`, as "line: name"."""
    aliases = {KERNEL_MODULE}
    found = []
    in_runtime = rel.startswith("runtime/")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.module == KERNEL_MODULE or (node.level and node.module == "kernel" and in_runtime):
                found += [f"{node.lineno}: {a.name}" for a in node.names if a.name.startswith("_")]
            elif node.module == "luabpf.runtime" or (node.level and node.module is None and in_runtime):
                aliases |= {a.asname or a.name for a in node.names if a.name == "kernel"}
        elif isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.name == KERNEL_MODULE and a.asname}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and \
                ast.unparse(node.value) in aliases:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("getattr", "hasattr", "setattr") and len(node.args) >= 2 and \
                ast.unparse(node.args[0]) in aliases and isinstance(node.args[1], ast.Constant) and \
                isinstance(node.args[1].value, str) and _private(node.args[1].value):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return sorted(found, key=lambda use: int(use.split(":")[0]))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def uapi_names() -> tuple[set[str], set[str]]:
    """(the names uapi.py assigns at module level, the names of its classes)."""
    tree = ast.parse((ROOT / UAPI).read_text())
    names, classes = set(), set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            classes.add(node.name)
        else:
            names |= set(_assigned(node))
    return names, classes


def _assigned(node) -> list[str]:
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign):
        targets = [node.target]
    else:
        return []
    out = []
    for target in targets:
        for t in ast.walk(target):
            if isinstance(t, ast.Name):
                out.append(t.id)
    return out


def constant_declarations(tree: ast.Module, rel: str, names: set[str],
                          classes: set[str]) -> list[str]:
    """The kernel constants `rel` declares (anywhere in it, a leading `_` aside) that
    belong to uapi.py, opcode.py or helpers.py."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name in classes and rel != UAPI:
            found.append(node.name)
        for name in _assigned(node):
            bare = name.lstrip("_")
            prefix = next((p for p in PREFIXES if bare.startswith(p)), None)
            owner = UAPI if bare in names or not prefix else OWNER_OF_PREFIX.get(prefix, UAPI)
            if (prefix or bare in names) and rel != owner:
                found.append(bare)
    return found


def test_no_module_but_kernel_py_reaches_its_private_names():
    offenders = {rel: uses for rel, tree in sources() if rel != KERNEL
                 for uses in [private_kernel_uses(tree, rel)] if uses}
    assert offenders == {}, "runtime/kernel.py's public functions are the syscall layer"


def test_only_uapi_declares_kernel_constants():
    names, classes = uapi_names()
    declared = {(rel, name) for rel, tree in sources()
                for name in constant_declarations(tree, rel, names, classes)}
    assert declared == set(), "import these from compiler/bpf/uapi.py"


def test_the_scans_find_what_they_look_for():
    code = ast.parse("from luabpf.runtime import kernel as k\n"
                     "from luabpf.runtime.kernel import _fail, prog_load\n"
                     "k._bpf(1, None)\nk.prog_load\ngetattr(k, '_Attr')\nk.__name__\n")
    assert private_kernel_uses(code, "cli/x.py") == ["2: _fail", "3: k._bpf",
                                                     "5: getattr(k, '_Attr')"]
    assert private_kernel_uses(ast.parse("from . import kernel\nkernel._fail\n"),
                               "runtime/x.py") == ["2: kernel._fail"]
    names, classes = uapi_names()
    assert {"XDP_PASS", "TC_ACT_SHOT", "BPF_ANY", "BPF_F_SLEEPABLE"} <= names
    assert {"ProgType", "MapType", "AttachType", "LinkType"} <= classes
    code = ast.parse("_PROG_TYPE_XDP = 6\nA, XDP_PASS = 1, 2\nMAP_TYPE_X: int = 1\n"
                     "_BPF_FUNC_LOOP = 181\nPSEUDO_FUNC = 4\nclass ProgType: pass\n"
                     "def f():\n    BPF_F_MMAPABLE = 1 << 10\nOTHER = 3\n")
    assert sorted(constant_declarations(code, "runtime/x.py", names, classes)) == sorted([
        "ProgType", "PROG_TYPE_XDP", "XDP_PASS", "MAP_TYPE_X", "BPF_FUNC_LOOP", "PSEUDO_FUNC",
        "BPF_F_MMAPABLE"])
    assert constant_declarations(ast.parse("PSEUDO_FUNC = 4\n"), "compiler/bpf/opcode.py",
                                 names, classes) == []


# include/uapi/linux/bpf.h, Linux 6.18: (structure, field, byte offset)
LAYOUT = [
    ("bpf_attr.prog_load", "insns", 8), ("bpf_attr.prog_load", "log_buf", 32),
    ("bpf_attr.prog_load", "prog_name", 48), ("bpf_attr.prog_load", "expected_attach_type", 68),
    ("bpf_attr.prog_load", "func_info", 80), ("bpf_attr.prog_load", "line_info", 96),
    ("bpf_attr.prog_load", "attach_btf_id", 108), ("bpf_attr.prog_load", "fd_array", 120),
    ("bpf_attr.prog_load", "log_true_size", 140), ("bpf_attr.prog_load", "fd_array_cnt", 148),
    ("bpf_attr.map_create", "map_name", 28), ("bpf_attr.map_create", "btf_value_type_id", 56),
    ("bpf_attr.map_create", "map_extra", 64), ("bpf_attr.map_elem", "key", 8),
    ("bpf_attr.map_elem", "flags", 24), ("bpf_attr.test", "data_in", 16),
    ("bpf_attr.test", "repeat", 32), ("bpf_attr.test", "ctx_in", 48),
    ("bpf_attr.test", "batch_size", 72), ("bpf_attr.obj", "file_flags", 12),
    ("bpf_attr.btf_load", "btf_log_true_size", 28), ("bpf_prog_info", "name", 64),
    ("bpf_prog_info", "run_time_ns", 192), ("bpf_prog_info", "verified_insns", 216),
    ("bpf_map_info", "map_extra", 80),
    ("bpf_attr.link_create", "target_ifindex", 4), ("bpf_attr.link_create", "attach_type", 8),
    ("bpf_attr.link_create", "flags", 12), ("bpf_attr.link_create", "relative_fd", 16),
    ("bpf_attr.link_create", "expected_revision", 24),
    ("bpf_attr.link_create.perf_event", "target_fd", 4),
    ("bpf_attr.link_create.perf_event", "attach_type", 8),
    ("bpf_attr.link_create.perf_event", "bpf_cookie", 16),
    ("bpf_link_info", "prog_id", 8), ("bpf_link_info", "ifindex", 16),
    ("bpf_link_info", "attach_type", 20),
]


@pytest.mark.parametrize("struct, field, offset", LAYOUT)
def test_attr_layout(struct, field, offset):
    assert kernel.struct_layouts()[struct][field][0] == offset


def test_every_structure_is_checked():
    assert {s for s, _, _ in LAYOUT} | {"bpf_attr.batch", "bpf_attr.get_id", "bpf_attr.info",
                                        "bpf_attr.enable_stats", "bpf_attr.link_detach"} \
        == set(kernel.struct_layouts())
