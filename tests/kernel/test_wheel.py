"""The package as a user installs it: a wheel built from the clean checkout, installed
into a fresh virtual environment outside the repository, and run from there.

The editable install the other tests use maps `luabpf` onto the checkout, so it
hides anything the wheel leaves out (a subpackage, examples/, a grammar). Here:
- the wheel is built from a copy of the tracked files only (`git ls-files`: no
  .venv, build/ or other debris of the working directory), offline
  (`pip wheel --no-deps --no-build-isolation --no-index`, with the setuptools and
  wheel that scripts/setup.sh provides);
- it must hold every package directory of the tree and every file they need,
  examples/ and stdlib/, and nothing of tests/ or bench/;
- it is installed with `--no-deps --no-index` into a venv made by Debian's
  python3 (`--system-site-packages`, so `import bcc` works; `--without-pip`, since
  the running pip installs into it with `--python`, which saves seconds); its dependencies
  come from the environment running the tests (a path line in a .pth file,
  which adds the directory without running its .pth files, so the checkout's
  editable install stays out), and `pip check` must find every requirement the
  wheel declares satisfied;
- `luabpf --version`, `luabpf demo` (loads into the kernel) and `luabpf check`
  on shipped examples run from a directory outside the repository.
"""
from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOT_SHIPPED = ("tests", "bench")
# Files the installed package needs, by suffix.
NEEDED = (".py", ".lua", ".lark")
BUILD_FILES = ("setup.py",)             # the build hook sits in the root, but is not luabpf's
SYSTEM_PYTHON = "/usr/bin/python3"      # Debian's: the one that can import bcc


def run(cmd, cwd, timeout=300, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env, **kw)


def tracked_files() -> list[str]:
    """The checkout's tracked files (as CI's fresh clone has them), relative to ROOT."""
    if not os.path.exists(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout, so there is no list of tracked files to build from")
    # safe.directory: a CI clone owned by another user than the one running the tests.
    r = run(["git", "-c", "safe.directory=*", "ls-files", "-z"], cwd=ROOT)
    assert r.returncode == 0, f"git ls-files failed: {r.stderr}"
    return [f for f in r.stdout.split("\0") if f and os.path.isfile(os.path.join(ROOT, f))]


def clean_copy(dest: str) -> list[str]:
    files = tracked_files()
    for f in files:
        os.makedirs(os.path.join(dest, os.path.dirname(f)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, f), os.path.join(dest, f))
    return files


def build_wheel(src: str, out: str) -> str:
    r = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
             "--no-index", "-w", out, src], cwd=out)
    assert r.returncode == 0, f"building the wheel failed:\n{r.stdout}\n{r.stderr}"
    wheels = [f for f in os.listdir(out) if f.endswith(".whl")]
    assert len(wheels) == 1, wheels
    return os.path.join(out, wheels[0])


def wheel_names(wheel: str) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def package_dirs(files: list[str]) -> set[str]:
    """Directories (relative, "" for the root) with an __init__.py, outside tests/ and bench/."""
    return {os.path.dirname(f) for f in files
            if os.path.basename(f) == "__init__.py" and f.split("/")[0] not in NOT_SHIPPED}


def needed_files(files: list[str]) -> set[str]:
    """What the installed package must hold: every tracked .py, .lua and .lark file outside
    tests/ and bench/ (one in a directory without an __init__.py would not ship: the test
    says so), and all of examples/ (read by `luabpf demo`)."""
    return {f for f in files if f.split("/")[0] not in NOT_SHIPPED and f not in BUILD_FILES
            and (f.endswith(NEEDED) or f.split("/")[0] == "examples")}


def temp_dir_outside_repo(prefix: str) -> str:
    path = tempfile.mkdtemp(prefix=prefix)
    assert not os.path.realpath(path).startswith(os.path.realpath(ROOT) + os.sep), path
    return path


@pytest.fixture(scope="module")
def built():
    """(wheel path, tracked files) — the wheel of a clean copy of the checkout."""
    work = temp_dir_outside_repo("luabpf-wheel-")
    try:
        src = os.path.join(work, "src")
        files = clean_copy(src)
        out = os.path.join(work, "dist")
        os.mkdir(out)
        yield build_wheel(src, out), files
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def installed(built):
    """(venv directory, installed package directory, a working directory outside the repo)."""
    wheel, _ = built
    work = temp_dir_outside_repo("luabpf-venv-")
    try:
        venv = os.path.join(work, "venv")
        r = run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", "--without-pip", venv],
                cwd=work)
        assert r.returncode == 0, r.stderr
        python = os.path.join(venv, "bin", "python")
        site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   cwd=work).stdout.strip()
        deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        with open(os.path.join(site, "luabpf-test-deps.pth"), "w") as f:
            f.write("".join(f"{d}\n" for d in sorted(deps)))
        r = run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
                 "--no-index", wheel], cwd=work)
        assert r.returncode == 0, f"installing the wheel failed:\n{r.stdout}\n{r.stderr}"
        where = os.path.join(work, "elsewhere")
        os.mkdir(where)
        r = run([python, "-c", "import luabpf, os; print(os.path.dirname(luabpf.__file__))"], cwd=where)
        assert r.returncode == 0, r.stderr
        package = r.stdout.strip()
        assert package == os.path.join(site, "luabpf"), package   # the wheel's, not the checkout
        yield venv, package, where
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- no kernel needed --------------------------------------------------------------

def test_the_wheel_holds_every_package_directory_of_the_tree_and_no_tests(built):
    wheel, files = built
    names = wheel_names(wheel)
    for d in package_dirs(files):
        assert f"luabpf/{d + '/' if d else ''}__init__.py" in names, f"package {d or '.'} missing"
    missing = sorted(f for f in needed_files(files) if f"luabpf/{f}" not in names)
    assert not missing, f"not in the wheel: {missing}"
    for must in ("luabpf/examples/README.md", "luabpf/examples/ssh_filter.lua",
                 "luabpf/stdlib/net.lua", "luabpf/stdlib/cpufreq.lua", "luabpf/compiler/front/grammar.lark"):
        assert must in names
    shipped = {n for n in names if ".dist-info/" not in n}
    for n in shipped:
        top = n.split("/")[1] if n.startswith("luabpf/") else n.split("/")[0]
        assert n.startswith("luabpf/") and top not in NOT_SHIPPED, f"{n} shipped"
    assert not [f for f in BUILD_FILES if f"luabpf/{f}" in names]
    stray = sorted(n for n in shipped if n[len("luabpf/"):] not in files)
    assert not stray, f"the wheel holds files the checkout does not track: {stray}"


def test_a_new_subpackage_ships_without_touching_the_packaging_files():
    work = temp_dir_outside_repo("luabpf-newpkg-")
    try:
        src = os.path.join(work, "src")
        clean_copy(src)
        for d in ("compiler/newpkg", "compiler/newpkg/deeper"):
            os.makedirs(os.path.join(src, d))
            with open(os.path.join(src, d, "__init__.py"), "w") as f:
                f.write('"""A subpackage no packaging file names."""\n')
        with open(os.path.join(src, "compiler/newpkg/rules.lark"), "w") as f:
            f.write("start: \"x\"\n")
        out = os.path.join(work, "dist")
        os.mkdir(out)
        names = wheel_names(build_wheel(src, out))
        for f in ("compiler/newpkg/__init__.py", "compiler/newpkg/deeper/__init__.py",
                  "compiler/newpkg/rules.lark"):
            assert f"luabpf/{f}" in names
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_the_installed_wheel_declares_what_it_needs_and_prints_its_version(installed):
    venv, package, where = installed
    r = run([os.path.join(venv, "bin", "python"), "-m", "pip", "check"], cwd=where)
    # pip check also judges the system's own packages; only luabpf's requirements are ours.
    assert not [line for line in r.stdout.splitlines() if line.startswith("luabpf ")], r.stdout
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    assert cfg["metadata"]["version"] == "attr: luabpf.__version__"
    with open(os.path.join(ROOT, "__init__.py"), encoding="utf-8") as f:
        written = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)
    r = run([os.path.join(venv, "bin", "luabpf"), "--version"], cwd=where)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"luabpf {written}", r.stdout


# ---- in the kernel -------------------------------------------------------------------

@pytest.mark.kernel
def test_luabpf_demo_runs_from_the_installed_wheel(installed):
    venv, package, where = installed
    r = run([os.path.join(venv, "bin", "luabpf"), "demo"], cwd=where)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "examples/ssh_filter.lua" in r.stdout and "XDP_DROP" in r.stdout
    assert "TC_ACT_SHOT" in r.stdout and "gcd(1071, 462)" in r.stdout


@pytest.mark.kernel
@pytest.mark.parametrize("example,programs", [
    ("port_blocklist.lua", ["xdp/filter"]),                 # packet headers: stdlib/net.lua
    ("overheat.lua", ["cpufreq/throttle", "tracepoint/sched/sched_switch"]),   # stdlib/cpufreq.lua
])
def test_luabpf_check_passes_the_verifier_on_a_shipped_example(installed, example, programs):
    venv, package, where = installed
    path = os.path.join(package, "examples", example)
    r = run([os.path.join(venv, "bin", "luabpf"), "check", path], cwd=where)
    assert r.returncode == 0, r.stdout + r.stderr
    for program in programs:
        assert f"{path}: {program}: verified by the kernel" in r.stdout, r.stdout
