"""runtime/cpufreq.py without a kernel or a cpufreq driver: simulated sysfs trees,
what '<=' and '>=' resolve to, governor switching and restoring, dry runs, rate
limiting on a fake clock, and the one-sentence errors."""
from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from luabpf.runtime import cpufreq
from luabpf.runtime.cpufreq import (Actuator, CpufreqError, Decision, SysfsTree, make_simulated,
                                    resolve)

FREQS = [800000, 1200000, 1600000, 2000000, 2400000]


def cpufreq_file(root, cpu: int, name: str) -> str:
    return os.path.join(str(root), "devices", "system", "cpu", f"cpu{cpu}", "cpufreq", name)


def read(root, cpu: int, name: str) -> str:
    with open(cpufreq_file(root, cpu, name)) as f:
        return f.read().strip()


def write(root, cpu: int, name: str, text: str) -> None:
    with open(cpufreq_file(root, cpu, name), "w") as f:
        f.write(text + "\n")


def snapshot(root) -> dict[str, str]:
    out = {}
    for d, _, files in os.walk(str(root)):
        for name in files:
            with open(os.path.join(d, name)) as f:
                out[os.path.relpath(os.path.join(d, name), str(root))] = f.read()
    return out


class FakeClock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


@pytest.fixture
def tree(tmp_path):
    return make_simulated(str(tmp_path), cpus=2, freqs=FREQS, governor="schedutil",
                          temps=[45, 70])


# ---- the tree --------------------------------------------------------------------------

def test_simulated_tree_reads(tree, tmp_path):
    assert tree.cpus() == [0, 1]
    assert tree.available(1) == FREQS
    assert tree.limits(0) == (800000, 2400000)
    assert tree.cur(0) == 2400000
    assert tree.governor(0) == "schedutil"
    assert "userspace" in tree.governors(0)
    assert read(tmp_path, 0, "scaling_setspeed") == "<unsupported>"


def test_cpus_are_only_cpuN_dirs_with_cpufreq(tmp_path):
    tree = make_simulated(str(tmp_path), cpus=[0, 2, 10])
    cpu_root = tmp_path / "devices" / "system" / "cpu"
    (cpu_root / "cpu3").mkdir()                         # offline: no cpufreq dir
    (cpu_root / "cpufreq" / "policy0").mkdir(parents=True)
    (cpu_root / "cpuidle").mkdir()
    (cpu_root / "cpu7x" / "cpufreq").mkdir(parents=True)
    assert tree.cpus() == [0, 2, 10]                    # numeric order, not "10" < "2"


def test_available_is_sorted_and_deduplicated(tree, tmp_path):
    write(tmp_path, 0, "scaling_available_frequencies", "2400000 800000 1600000 800000 ")
    assert tree.available(0) == [800000, 1600000, 2400000]


@pytest.mark.parametrize("how", ["missing", "empty"])
def test_available_falls_back_to_cpuinfo_limits(tree, tmp_path, how):
    path = cpufreq_file(tmp_path, 0, "scaling_available_frequencies")
    if how == "missing":
        os.remove(path)
    else:
        write(tmp_path, 0, "scaling_available_frequencies", "")
    write(tmp_path, 0, "cpuinfo_min_freq", "400000")
    assert tree.available(0) == [400000, 2400000]
    assert tree.available(1) == FREQS


def test_simulated_rule(tmp_path):
    assert make_simulated(str(tmp_path)).simulated
    assert not SysfsTree("/sys").simulated
    assert not SysfsTree("/sys/").simulated
    assert not SysfsTree("/sys/devices/../").simulated
    os.symlink("/sys", tmp_path / "link")
    assert not SysfsTree(str(tmp_path / "link")).simulated


def test_real_sysfs_cur_freq_is_never_written(monkeypatch):
    real = SysfsTree("/sys")
    monkeypatch.setattr(real, "cpufreq_dir", lambda cpu: "/nonexistent/cpufreq")
    with pytest.raises(CpufreqError, match="read-only"):
        real.simulate_cur(0, 800000)


def test_make_simulated_refuses_sys():
    with pytest.raises(ValueError, match="/sys"):
        make_simulated("/sys")


def test_make_simulated_governors_and_no_zones(tmp_path):
    tree = make_simulated(str(tmp_path), cpus=1, governor="ondemand", governors=["performance"],
                          temps=[])
    assert tree.governors(0) == ["performance", "ondemand"]
    assert tree.temp_c(0) is None
    bare = make_simulated(str(tmp_path / "b"), cpus=1, governors=None)
    assert bare.governors(0) is None


# ---- temperatures ----------------------------------------------------------------------

def test_temp_zone_per_cpu_and_fallback_to_zone0(tmp_path):
    tree = make_simulated(str(tmp_path), cpus=3, temps=[45, 70.9])
    assert tree.temp_c(0) == 45
    assert tree.temp_c(1) == 70                          # 70900 m°C, rounded down
    assert tree.temp_c(2) == 45                          # no thermal_zone2: zone 0


def test_temp_floors_negative_millidegrees(tmp_path):
    tree = make_simulated(str(tmp_path), cpus=1, temps=[-0.5])
    assert tree.temp_c(0) == -1


def test_temp_missing_zone_is_none(tmp_path):
    tree = make_simulated(str(tmp_path), cpus=2, temps=[])
    assert tree.temp_c(0) is None and tree.temp_c(1) is None


def test_temp_unreadable_is_none_malformed_is_an_error(tmp_path):
    tree = make_simulated(str(tmp_path), cpus=1, temps=[50])
    temp = tmp_path / "class" / "thermal" / "thermal_zone0" / "temp"
    temp.write_text("hot\n")
    with pytest.raises(CpufreqError) as e:
        tree.temp_c(0)
    assert str(temp) in str(e.value)
    temp.unlink()
    assert tree.temp_c(0) is None


# ---- resolution ------------------------------------------------------------------------

LIMITS = (800000, 2400000)


@pytest.mark.parametrize("freq, relation, expected", [
    (1600000, "<=", 1600000),      # exact
    (1600000, ">=", 1600000),
    (1700000, "<=", 1600000),      # between
    (1700000, ">=", 2000000),
    (1599999, "<=", 1200000),
    (1600001, ">=", 2000000),
    (100, "<=", 800000),           # below everything: '<=' gives the lowest
    (100, ">=", 800000),
    (9999999, "<=", 2400000),      # above everything: '>=' gives the highest
    (9999999, ">=", 2400000),
    (0, "<=", 800000),
    (-5, ">=", 800000),
])
def test_resolution_table(freq, relation, expected):
    assert resolve(freq, relation, FREQS, LIMITS) == expected


@pytest.mark.parametrize("freq, relation, limits, expected", [
    (2400000, ">=", (800000, 2000000), 2000000),   # above the max limit
    (2400000, "<=", (800000, 2000000), 2000000),
    (800000, "<=", (1200000, 2400000), 1200000),   # below the min limit
    (850000, "<=", (900000, 2400000), 1200000),    # lowest available inside, not 900000
    (1000000, ">=", (800000, 1100000), 800000),    # none inside at or above: highest inside
    (1600000, "<=", (1000000, 1100000), 1100000),  # nothing available inside: clamped
    (500000, ">=", (1000000, 1100000), 1000000),
    (1600000, "<=", (1600000, 1600000), 1600000),
])
def test_resolution_clamps_to_limits(freq, relation, limits, expected):
    assert resolve(freq, relation, FREQS, limits) == expected


def test_resolution_unsorted_available():
    assert resolve(1700000, "<=", [2400000, 800000, 1600000], LIMITS) == 1600000


@pytest.mark.parametrize("relation", ["<", ">", "==", "", "=<", None])
def test_resolution_rejects_other_relations(relation):
    with pytest.raises(ValueError, match="relation"):
        resolve(1600000, relation, FREQS, LIMITS)


def test_resolution_rejects_bad_inputs():
    with pytest.raises(ValueError, match="no available"):
        resolve(1, "<=", [], LIMITS)
    with pytest.raises(ValueError, match="minimum above the maximum"):
        resolve(1, "<=", FREQS, (2, 1))


khz = st.integers(min_value=1, max_value=5_000_000)


@st.composite
def tables(draw):
    available = draw(st.lists(khz, min_size=1, max_size=8))
    a, b = draw(khz), draw(khz)
    return available, (min(a, b), max(a, b))


@given(tables(), st.integers(min_value=-10, max_value=6_000_000), st.sampled_from(["<=", ">="]))
def test_resolve_properties(table, freq, relation):
    available, (lo, hi) = table
    got = resolve(freq, relation, available, (lo, hi))
    assert lo <= got <= hi
    inside = sorted(f for f in set(available) if lo <= f <= hi)
    if inside:
        assert got in inside
        if relation == "<=":
            assert got <= max(freq, inside[0])
            assert not [f for f in inside if got < f <= freq]     # the highest at or below
        else:
            assert got >= min(freq, inside[-1])
            assert not [f for f in inside if freq <= f < got]     # the lowest at or above
        if freq in inside:
            assert got == freq
    else:
        assert got in {min(max(f, lo), hi) for f in available}


@given(tables(), st.integers(min_value=0, max_value=6_000_000),
       st.integers(min_value=0, max_value=6_000_000), st.sampled_from(["<=", ">="]))
def test_resolve_is_monotonic(table, f1, f2, relation):
    available, limits = table
    a, b = sorted((f1, f2))
    assert resolve(a, relation, available, limits) <= resolve(b, relation, available, limits)


@given(tables(), st.integers(min_value=0, max_value=6_000_000))
def test_resolve_le_never_above_ge(table, freq):
    available, limits = table
    assert resolve(freq, "<=", available, limits) <= resolve(freq, ">=", available, limits)


# ---- governors -------------------------------------------------------------------------

def test_start_switches_to_userspace_and_stop_restores(tmp_path):
    tree = make_simulated(str(tmp_path), cpus=3, governor="schedutil")
    write(tmp_path, 1, "scaling_governor", "performance")
    write(tmp_path, 2, "scaling_governor", "userspace")
    act = Actuator(tree)
    act.start()
    assert [tree.governor(c) for c in range(3)] == ["userspace"] * 3
    assert act.changed_governors == {0: "schedutil", 1: "performance"}
    act.stop()
    assert [tree.governor(c) for c in range(3)] == ["schedutil", "performance", "userspace"]
    write(tmp_path, 0, "scaling_governor", "powersave")
    act.stop()                                         # idempotent: nothing left to restore
    assert tree.governor(0) == "powersave"


def test_governors_restored_after_exception_in_with_block(tree):
    with pytest.raises(RuntimeError, match="policy blew up"):
        with Actuator(tree) as act:
            assert tree.governor(0) == "userspace"
            act.apply(0, 1200000, "<=")
            raise RuntimeError("policy blew up")
    assert tree.governor(0) == tree.governor(1) == "schedutil"


def test_failed_start_restores_the_cpus_already_switched(tmp_path):
    tree = make_simulated(str(tmp_path), cpus=3)
    write(tmp_path, 2, "scaling_available_governors", "performance schedutil")
    act = Actuator(tree)
    with pytest.raises(CpufreqError) as e:
        act.start()
    assert cpufreq_file(tmp_path, 2, "scaling_governor") in str(e.value)
    assert "'userspace' is not available" in str(e.value)
    assert [tree.governor(c) for c in range(3)] == ["schedutil"] * 3
    assert act.changed_governors == {}
    act.stop()                                          # safe after a failed start


def test_stop_tries_every_cpu_then_raises_the_first_failure(tree, tmp_path):
    act = Actuator(tree).start()
    os.remove(cpufreq_file(tmp_path, 0, "scaling_governor"))
    with pytest.raises(CpufreqError, match="scaling_governor does not exist"):
        act.stop()
    assert tree.governor(1) == "schedutil"
    act.stop()


def test_start_without_cpus_is_an_error(tmp_path):
    (tmp_path / "devices" / "system" / "cpu" / "cpu0").mkdir(parents=True)
    with pytest.raises(CpufreqError, match="no CPU under .* has a cpufreq directory"):
        Actuator(SysfsTree(str(tmp_path))).start()


# ---- applying requests -----------------------------------------------------------------

def test_apply_writes_setspeed_and_simulated_cur_follows(tree, tmp_path):
    clock = FakeClock()
    with Actuator(tree, clock=clock) as act:
        d = act.apply(0, 1700000, "<=")
        assert d == Decision(0, 1700000, "<=", 1600000, True, None)
        assert read(tmp_path, 0, "scaling_setspeed") == "1600000"
        assert tree.cur(0) == 1600000
        assert tree.cur(1) == 2400000                  # the other CPU untouched
        clock.advance(1)
        act.apply(1, 1, ">=")
        assert tree.cur(1) == 800000


def test_decision_as_json(tree):
    d = Actuator(tree, dry_run=True).apply(1, 1700000, ">=")
    assert d.as_json() == {"cpu": 1, "requested": 1700000, "relation": ">=",
                           "resolved": 2000000, "written": False, "reason": "dry run"}


def test_apply_rejects_bad_relation_and_cpu(tree, tmp_path):
    act = Actuator(tree)
    with pytest.raises(ValueError, match="relation"):
        act.apply(0, 1, "==")
    with pytest.raises(CpufreqError) as e:
        act.apply(5, 1, "<=")
    assert str(e.value) == ("CPU 5 has no cpufreq directory "
                            f"{os.path.join(str(tmp_path), 'devices/system/cpu/cpu5/cpufreq')}")


def test_dry_run_writes_nothing(tree, tmp_path):
    before = snapshot(tmp_path)
    clock = FakeClock()
    with Actuator(tree, dry_run=True, clock=clock) as act:
        decisions = [act.apply(0, 1200000, "<="), act.apply(1, 2000000, ">=")]
        clock.advance(1)
        decisions.append(act.apply(0, 800000, "<="))
        act.flush()
        assert snapshot(tmp_path) == before            # governors untouched while running too
        assert act.changed_governors == {}
    assert snapshot(tmp_path) == before
    assert [d.resolved for d in decisions] == [1200000, 2000000, 800000]
    assert all(not d.written and d.reason == "dry run" for d in decisions)


def test_dry_run_shows_rate_limiting_like_a_real_run(tree):
    clock = FakeClock()
    act = Actuator(tree, dry_run=True, clock=clock)
    assert act.apply(0, 1200000, "<=").reason == "dry run"
    assert act.apply(0, 1200000, "<=").reason == "unchanged"
    assert act.apply(0, 2400000, "<=").reason == "rate limited"


def test_rate_limit_unchanged_and_too_soon(tree, tmp_path):
    clock = FakeClock()
    with Actuator(tree, min_gap_s=0.02, clock=clock) as act:
        assert act.apply(0, 1200000, "<=").written
        clock.advance(1)
        d = act.apply(0, 1300000, "<=")                # resolves to the same 1200000
        assert (d.written, d.reason) == (False, "unchanged")
        clock.advance(1)
        assert act.apply(0, 2000000, "<=").written
        clock.advance(0.019)
        d = act.apply(0, 800000, "<=")
        assert (d.written, d.reason, d.resolved) == (False, "rate limited", 800000)
        assert read(tmp_path, 0, "scaling_setspeed") == "2000000"
        assert act.apply(1, 800000, "<=").written      # per CPU: CPU 1 has no last write
        clock.advance(0.001)                           # exactly min_gap_s since CPU 0's write
        assert act.apply(0, 800000, "<=").written
        assert read(tmp_path, 0, "scaling_setspeed") == "800000"


def test_flush_writes_the_latest_pending_request_once_its_gap_passed(tree, tmp_path):
    clock = FakeClock()
    with Actuator(tree, min_gap_s=0.02, clock=clock) as act:
        act.apply(0, 2400000, ">=")
        act.apply(1, 2400000, ">=")
        clock.advance(0.005)
        assert act.apply(0, 1200000, "<=").reason == "rate limited"
        assert act.apply(0, 1600000, ">=").reason == "rate limited"   # replaces the older one
        assert act.apply(1, 800000, "<=").reason == "rate limited"
        assert act.pending() == {0: (1600000, ">="), 1: (800000, "<=")}
        assert act.flush() == []                        # gap not passed yet: stays pending
        assert act.pending() == {0: (1600000, ">="), 1: (800000, "<=")}
        clock.advance(0.015)
        done = act.flush()
        assert [(d.cpu, d.resolved, d.written) for d in done] == [(0, 1600000, True),
                                                                  (1, 800000, True)]
        assert read(tmp_path, 0, "scaling_setspeed") == "1600000"
        assert tree.cur(1) == 800000
        assert act.pending() == {} and act.flush() == []


def test_flush_is_per_cpu(tree, tmp_path):
    clock = FakeClock()
    with Actuator(tree, min_gap_s=0.02, clock=clock) as act:
        act.apply(0, 2400000, ">=")
        clock.advance(0.01)
        act.apply(1, 2400000, ">=")
        act.apply(0, 800000, "<=")
        act.apply(1, 800000, "<=")
        clock.advance(0.01)                            # CPU 0's gap passed, CPU 1's not
        assert [d.cpu for d in act.flush()] == [0]
        assert act.pending() == {1: (800000, "<=")}


def test_unchanged_request_drops_a_pending_one(tree, tmp_path):
    clock = FakeClock()
    with Actuator(tree, clock=clock) as act:
        act.apply(0, 2400000, ">=")
        act.apply(0, 800000, "<=")                     # rate limited, pending
        assert act.apply(0, 2400000, ">=").reason == "unchanged"   # back to what is written
        assert act.pending() == {}
        clock.advance(1)
        assert act.flush() == []
        assert read(tmp_path, 0, "scaling_setspeed") == "2400000"


def test_frequencies_are_read_once_per_cpu(tree, tmp_path):
    clock = FakeClock()
    act = Actuator(tree, clock=clock)
    act.apply(0, 1, "<=")
    write(tmp_path, 0, "scaling_available_frequencies", "not numbers")
    clock.advance(1)
    assert act.apply(0, 9999999, ">=").resolved == 2400000


# ---- errors ----------------------------------------------------------------------------

def one_sentence(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text and text.count(". ") == 0 and len(text) < 300
    return text


def test_missing_tree(tmp_path):
    with pytest.raises(CpufreqError) as e:
        SysfsTree(str(tmp_path / "nowhere"))
    text = one_sentence(e.value)
    assert os.path.join(str(tmp_path), "nowhere", "devices", "system", "cpu") in text
    assert "does not exist" in text


def test_missing_file_names_the_path(tree, tmp_path):
    os.remove(cpufreq_file(tmp_path, 1, "cpuinfo_max_freq"))
    with pytest.raises(CpufreqError) as e:
        tree.limits(1)
    assert one_sentence(e.value) == f"{cpufreq_file(tmp_path, 1, 'cpuinfo_max_freq')} does not exist"


def test_write_never_creates_a_missing_file(tree, tmp_path):
    os.remove(cpufreq_file(tmp_path, 0, "scaling_setspeed"))
    with pytest.raises(CpufreqError, match="scaling_setspeed does not exist"):
        tree.set_speed(0, 800000)
    assert not os.path.exists(cpufreq_file(tmp_path, 0, "scaling_setspeed"))


def test_malformed_numbers(tree, tmp_path):
    write(tmp_path, 0, "scaling_cur_freq", "<unknown>")
    with pytest.raises(CpufreqError) as e:
        tree.cur(0)
    assert one_sentence(e.value).startswith(cpufreq_file(tmp_path, 0, "scaling_cur_freq"))
    write(tmp_path, 0, "scaling_available_frequencies", "800000 fast")
    with pytest.raises(CpufreqError, match="expected frequencies in kHz"):
        tree.available(0)
    write(tmp_path, 1, "cpuinfo_min_freq", "9999999")
    with pytest.raises(CpufreqError, match="maximum 2400000 is below the minimum 9999999"):
        tree.limits(1)


def test_permission_denied_names_the_path(tree, tmp_path, monkeypatch):
    target = cpufreq_file(tmp_path, 0, "scaling_setspeed")
    real_open = os.open

    def guarded(path, flags, *args, **kw):
        if os.fspath(path) == target and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(cpufreq.os, "open", guarded)
    before = read(tmp_path, 0, "scaling_setspeed")
    with Actuator(tree) as act:
        with pytest.raises(CpufreqError) as e:
            act.apply(0, 800000, "<=")
    text = one_sentence(e.value)
    assert text.startswith(f"{target}: permission denied")
    assert "root" in text
    assert read(tmp_path, 0, "scaling_setspeed") == before


def test_governor_not_offered(tree, tmp_path):
    write(tmp_path, 0, "scaling_available_governors", "performance powersave")
    with pytest.raises(CpufreqError) as e:
        tree.set_governor(0, "userspace")
    assert one_sentence(e.value) == (
        f"{cpufreq_file(tmp_path, 0, 'scaling_governor')}: governor 'userspace' is not "
        "available (the CPU offers performance, powersave)")
    assert tree.governor(0) == "schedutil"


def test_governor_without_list_is_written(tree, tmp_path):
    os.remove(cpufreq_file(tmp_path, 0, "scaling_available_governors"))
    tree.set_governor(0, "userspace")
    assert tree.governor(0) == "userspace"


def test_kernel_refusal_is_a_sentence(tree, tmp_path, monkeypatch):
    real_write = os.write

    def refuse(fd, data):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(cpufreq.os, "write", refuse)
    with pytest.raises(CpufreqError) as e:
        tree.set_speed(0, 1234)
    monkeypatch.setattr(cpufreq.os, "write", real_write)
    assert one_sentence(e.value) == (f"{cpufreq_file(tmp_path, 0, 'scaling_setspeed')}: the "
                                     "kernel refused the value '1234'")
