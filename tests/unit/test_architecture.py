"""The import rules of the house (docs/architecture.md), checked on the source tree.

Read statically (ast), without importing anything: the repository root is the package
`luabpf`; tests/, bench/, scripts/ and hidden or build directories are not part of it.

- No import cycle between luabpf's modules, counting every import (module level, including
  `if`/`try`/class bodies, and inside functions; not `if TYPE_CHECKING:`).
- No import inside a function, except of the optional heavy dependencies (rich, scapy, bcc,
  pyroute2): those are imported where they are used, so that `import luabpf` and the
  commands that do not need them stay fast and work without them, and each such import
  says why in a comment on its line or the line above.  A function-level import of one of
  luabpf's own modules only hides a cycle.
- compiler/ is pure: it imports neither the runtime (which touches the kernel) nor the
  CLI nor the Python interface (luabpf.api, which loads programs); runtime/ does not
  import the CLI.

The checker is tried on small trees made in tmp_path first, so a rule that stopped seeing
anything would fail there rather than pass silently here.
"""
from __future__ import annotations

import ast
import io
import os
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "luabpf"
NOT_THE_PACKAGE = {"tests", "bench", "scripts", "build", "dist"}
OPTIONAL_HEAVY = {"rich", "scapy", "bcc", "pyroute2"}

# (module, function, imported module): function-level imports of luabpf's own modules
# that are allowed, each with its reason.
ALLOWED_LAZY_INTERNAL = {
    ("luabpf", "__getattr__", "luabpf.api"):
        "PEP 562: `luabpf.compile` and the other public names are looked up on first use, "
        "so `import luabpf.compiler` (and the CLI's start) do not load the runtime that "
        "luabpf.api imports; the package itself has no other code",
}

# (importing package, imported package): what each layer must not import.
FORBIDDEN = [
    ("luabpf.compiler", "luabpf.runtime", "compiler/ never touches the kernel"),
    ("luabpf.compiler", "luabpf.cli", "compiler/ sits below the CLI"),
    ("luabpf.compiler", "luabpf.api", "compiler/ sits below the Python interface"),
    ("luabpf.runtime", "luabpf.cli", "runtime/ sits below the CLI"),
]


@dataclass
class Import:
    module: str          # the importing module
    line: int
    targets: list[str]   # what it imports: luabpf modules, or top-level names of others
    function: str | None  # the enclosing function, None at module level
    commented: bool      # a comment on its lines or the line above


@dataclass
class Tree:
    modules: dict[str, Path] = field(default_factory=dict)
    imports: list[Import] = field(default_factory=list)

    def edges(self) -> dict[str, dict[str, Import]]:
        """module -> imported module -> the first import of it.  Function-level imports
        count: a cycle they hide is still a cycle (and the rule below forbids them)."""
        edges: dict[str, dict[str, Import]] = {m: {} for m in self.modules}
        for imp in self.imports:
            for t in imp.targets:
                if t in self.modules:
                    edges[imp.module].setdefault(t, imp)
        return edges


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def find_modules(root: Path, package: str) -> dict[str, Path]:
    modules = {}
    for here, dirs, files in os.walk(root):
        rel = Path(here).relative_to(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__"))
                         and not d.endswith(".egg-info")
                         and not (rel == Path(".") and d in NOT_THE_PACKAGE))
        if rel != Path(".") and not (Path(here) / "__init__.py").exists():
            dirs[:] = []
            continue
        for f in files:
            if f.endswith(".py"):
                parts = [package, *rel.parts] if rel != Path(".") else [package]
                if f != "__init__.py":
                    parts.append(f[:-3])
                modules[".".join(parts)] = Path(here) / f
    return modules


def _comment_lines(text: str) -> set[int]:
    return {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(text).readline)
            if tok.type == tokenize.COMMENT}


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
        or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def read_tree(root: Path, package: str = PACKAGE) -> Tree:
    tree = Tree(find_modules(root, package))
    for name, path in tree.modules.items():
        text = path.read_text(encoding="utf-8")
        comments = _comment_lines(text)
        own_package = name if path.name == "__init__.py" else name.rpartition(".")[0]

        def targets(node) -> list[str]:
            if isinstance(node, ast.Import):
                return [a.name for a in node.names]
            base = node.module or ""
            if node.level:
                parts = own_package.split(".")[:len(own_package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out = []
            for a in node.names:           # a submodule, or a name from the package
                out.append(f"{base}.{a.name}" if f"{base}.{a.name}" in tree.modules else base)
            return out

        def visit(node, function):
            for child in ast.iter_child_nodes(node):
                if _type_checking_only(child):
                    continue
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    lines = set(range(child.lineno - 1, (child.end_lineno or child.lineno) + 1))
                    tree.imports.append(Import(name, child.lineno, list(dict.fromkeys(
                        targets(child))), function, bool(lines & comments)))
                inner = function
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    inner = getattr(child, "name", "<lambda>") if function is None \
                        else f"{function}.{getattr(child, 'name', '<lambda>')}"
                visit(child, inner)

        visit(ast.parse(text, str(path)), None)
    return tree


def cycles(tree: Tree) -> list[str]:
    """Each import cycle, one per strongly connected group of modules: a shortest loop
    through the group, each step as `module:line (in function) -> imported module`."""
    edges = tree.edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(v):               # Tarjan's algorithm; the graph is small
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1 or v in edges[v]:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            connect(v)
    found = []
    for group in sorted(groups, key=min):
        start = min(group)
        paths = {start: [start]}
        frontier, loop = [start], None
        while loop is None:       # breadth first: the group is strongly connected
            nxt = []
            for v in frontier:
                for w in sorted(set(edges[v]) & group):
                    if w == start and loop is None:
                        loop = paths[v] + [start]
                    elif w not in paths:
                        paths[w] = paths[v] + [w]
                        nxt.append(w)
            frontier = nxt
        steps = []
        for a, b in zip(loop, loop[1:]):
            imp = edges[a][b]
            steps.append(f"{a}:{imp.line}" + (f" (in {imp.function})" if imp.function else ""))
        text = " -> ".join(steps + [start])
        rest = sorted(group - set(loop))
        found.append(text + (f"; the same cycle also holds {', '.join(rest)}" if rest else ""))
    return found


def function_level_problems(tree: Tree) -> list[str]:
    problems = []
    for imp in tree.imports:
        if imp.function is None:
            continue
        where = f"{imp.module}:{imp.line} (in {imp.function})"
        for target in imp.targets:
            top = target.split(".")[0]
            if top in OPTIONAL_HEAVY:
                if not imp.commented:
                    problems.append(f"{where}: lazy import of {target} says not why "
                                    "(a comment on its line or the line above)")
            elif (imp.module, imp.function, target) not in ALLOWED_LAZY_INTERNAL:
                problems.append(f"{where}: imports {target} inside a function")
    return sorted(problems)


def layer_problems(tree: Tree) -> list[str]:
    problems = []
    for imp in tree.imports:
        for low_layer, high_layer, why in FORBIDDEN:
            if not _in(imp.module, low_layer):
                continue
            for target in imp.targets:
                if _in(target, high_layer) or (
                        target == PACKAGE and low_layer == "luabpf.compiler"):
                    # `import luabpf` reaches luabpf.api through the package's __getattr__
                    problems.append(f"{imp.module}:{imp.line} imports {target}: {why}")
    return sorted(problems)


# -- the checker itself, on small made-up trees ----------------------------------------------

def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checker_finds_a_cycle_behind_relative_and_from_imports(tmp_path):
    root = _write(tmp_path, {
        "__init__.py": "",
        "compiler/__init__.py": "",
        "compiler/a.py": "from . import b\n",
        "compiler/b.py": "from luabpf.compiler.c import thing\n",
        "compiler/c.py": "import luabpf.compiler.a\nthing = 1\n",
        "compiler/d.py": "from .c import thing\n",
        "tests/test_x.py": "import luabpf.compiler.a\n",
    })
    tree = read_tree(root)
    assert "luabpf.tests.test_x" not in tree.modules
    assert cycles(tree) == ["luabpf.compiler.a:1 -> luabpf.compiler.b:1 -> luabpf.compiler.c:1 "
                            "-> luabpf.compiler.a"]


def test_the_checker_sees_function_level_imports_and_the_layers(tmp_path):
    root = _write(tmp_path, {
        "__init__.py": "def __getattr__(name):\n    from luabpf import api\n    return api\n",
        "api.py": "",
        "runtime/__init__.py": "",
        "runtime/k.py": "def f():\n    import os\n",
        "compiler/__init__.py": "",
        "compiler/p.py": ("if TYPE_CHECKING:\n    from luabpf.runtime import k\n"
                          "def g():\n    # scapy is heavy\n    import scapy.all\n"
                          "def h():\n    import rich\n"
                          "class C:\n    def m(self):\n        from luabpf.runtime import k\n"),
    })
    tree = read_tree(root)
    assert function_level_problems(tree) == [
        "luabpf.compiler.p:10 (in m): imports luabpf.runtime.k inside a function",
        "luabpf.compiler.p:7 (in h): lazy import of rich says not why "
        "(a comment on its line or the line above)",
        "luabpf.runtime.k:2 (in f): imports os inside a function",
    ]
    assert layer_problems(tree) == [
        "luabpf.compiler.p:10 imports luabpf.runtime.k: compiler/ never touches the kernel"]
    assert cycles(tree) == []


# -- the tree --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tree() -> Tree:
    return read_tree(ROOT)


def test_the_package_is_all_there(tree):
    for name in ("luabpf", "luabpf.api", "luabpf.compiler.bpf.insn", "luabpf.runtime.kernel",
                 "luabpf.cli.app", "luabpf.compiler.front.parser"):
        assert name in tree.modules
    assert not [m for m in tree.modules if m.split(".")[1:2] in (["tests"], ["bench"])]


def test_no_import_cycle(tree):
    found = cycles(tree)
    assert not found, "import cycles:\n" + "\n".join(found)


def test_function_level_imports_are_only_of_optional_heavy_dependencies_and_say_why(tree):
    problems = function_level_problems(tree)
    assert not problems, "\n".join(problems)


def test_the_allowed_internal_lazy_imports_still_exist(tree):
    present = {(i.module, i.function, t) for i in tree.imports if i.function for t in i.targets}
    assert set(ALLOWED_LAZY_INTERNAL) <= present


def test_compiler_is_pure_and_runtime_is_below_the_cli(tree):
    problems = layer_problems(tree)
    assert not problems, "\n".join(problems)


# The compiler's layers, top to bottom (docs/architecture.md, "Import rules"): a module
# imports modules of its own layer or of layers below it, never above. Each layer is a
# list of module names or packages (a package stands for everything in it not placed
# more precisely: the longest match wins).
COMPILER_LAYERS = [
    ["luabpf.compiler.obj"],                                   # objects of the product
    ["luabpf.compiler.program"],                               # the driver
    ["luabpf.compiler.lower.lowerer", "luabpf.compiler.lower.expr",
     "luabpf.compiler.lower.loops", "luabpf.compiler.lower.calls"],   # statements, calls
    ["luabpf.compiler.front.check"],                           # reads the library table
    ["luabpf.compiler.lib.table"],                             # the library table
    ["luabpf.compiler.hooks"],                                 # hook records
    ["luabpf.compiler.lib"],                                   # the built-ins' lowerings
    ["luabpf.compiler.lower"],                                 # values, builder, scopes
    ["luabpf.compiler.opt", "luabpf.compiler.back"],           # IR → IR, IR → instructions
    ["luabpf.compiler.ir", "luabpf.compiler.front"],           # the IR; syntax, diagnostics
    ["luabpf.compiler.bpf"],                                   # instructions, the kernel's numbers
    ["luabpf.stdlib"],                                         # the shipped Lua
]


def compiler_layer(module: str) -> int | None:
    best, rank = -1, None
    for i, layer in enumerate(COMPILER_LAYERS):
        for name in layer:
            if _in(module, name) and len(name) > best:
                best, rank = len(name), i
    return rank


def compiler_layer_problems(tree: Tree) -> list[str]:
    problems = []
    for imp in tree.imports:
        mine = compiler_layer(imp.module)
        if mine is None:
            continue
        for target in imp.targets:
            theirs = compiler_layer(target)
            if theirs is not None and theirs < mine:
                problems.append(f"{imp.module}:{imp.line} imports {target}, a layer above it")
    return sorted(problems)


def test_every_compiler_module_has_a_layer(tree):
    assert [m for m in tree.modules if m.startswith("luabpf.compiler.")
            and compiler_layer(m) is None] == []


def test_the_compiler_imports_down_its_layers(tree):
    problems = compiler_layer_problems(tree)
    assert not problems, "\n".join(problems)


def test_the_layer_rule_sees_an_import_upwards(tmp_path):
    root = _write(tmp_path, {
        "__init__.py": "",
        "compiler/__init__.py": "",
        "compiler/ir.py": "",
        "compiler/program.py": "from luabpf.compiler import ir\n",
        "compiler/front/__init__.py": "",
        "compiler/front/parser.py": "from luabpf.compiler.program import x\n",
    })
    assert compiler_layer_problems(read_tree(root)) == [
        "luabpf.compiler.front.parser:1 imports luabpf.compiler.program, a layer above it"]
