"""Test configuration shared by every tier.

Decides, in this one place, what happens to tests marked `kernel` (they need
bpf(2), the verifier and BPF_PROG_TEST_RUN):
- with root or CAP_BPF they run;
- without, they are skipped, and the skip says why ("needs root or CAP_BPF: …");
- but when the environment variable CI is set (CI=true), a kernel test that
  cannot run FAILS instead, so a CI machine that lost its privileges never
  turns the kernel tier into a row of silent skips.

Hypothesis profiles: "ci" (derandomized: the same examples every run; no
deadline) is loaded by default; `LUABPF_HYPOTHESIS=long` loads "long"
(20 000 examples per test, random) for a longer differential search.

Fixtures: `bpffs_dir` — a fresh directory under /sys/fs/bpf, removed
(with whatever was pinned in it) after the test.
"""
from __future__ import annotations

import os
import shutil
import uuid

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "long", max_examples=20000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("LUABPF_HYPOTHESIS", "ci"))


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _kernel_unavailable() -> str:
    """Empty when kernel tests can run, else why not."""
    from luabpf.runtime.errors import missing_privilege
    missing = missing_privilege()
    return f"needs root or CAP_BPF: {missing}" if missing else ""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "kernel: needs bpf(2), the kernel verifier and BPF_PROG_TEST_RUN "
                   "(root or CAP_BPF)")


def pytest_report_header(config):
    why = _kernel_unavailable()
    profile = os.environ.get("LUABPF_HYPOTHESIS", "ci")
    kernel = f"kernel tests: {'run' if not why else why}{' (CI: must run)' if _in_ci() else ''}"
    return [kernel, f"hypothesis profile: {profile}"]


def pytest_runtest_setup(item):
    if item.get_closest_marker("kernel") is None:
        return
    why = _kernel_unavailable()
    if not why:
        return
    if _in_ci():
        pytest.fail(f"{why} (CI is set, so kernel tests must run, not skip)", pytrace=False)
    pytest.skip(why)


@pytest.fixture
def bpffs_dir():
    from luabpf.runtime.features import ensure_bpffs
    path = os.path.join(ensure_bpffs(), f"luabpf-test-{uuid.uuid4().hex[:12]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
