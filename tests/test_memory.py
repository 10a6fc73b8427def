import multiprocessing as mp
import os

import numpy as np

from kaggle_kit.limits import KernelLimits
from kaggle_kit.memory import PSS_EVERY_S, MemoryMonitor, cgroup_memory, process_tree_memory

MiB = 2**20


def _hold(n_bytes, ready, done):
    buf = np.ones(n_bytes, dtype=np.uint8)  # touched pages, not just reserved ones
    ready.set()
    done.wait(30)
    del buf


def test_memory_held_by_a_child_process_counts():
    ctx = mp.get_context("spawn")  # a fresh interpreter shares nothing with us: its pages are its own
    ready, done = ctx.Event(), ctx.Event()
    alone = process_tree_memory(os.getpid())
    child = ctx.Process(target=_hold, args=(400 * MiB, ready, done))
    child.start()
    try:
        assert ready.wait(60)
        with_child = process_tree_memory(os.getpid())
        own = process_tree_memory(child.pid)
    finally:
        done.set()
        child.join(30)

    assert own >= 400 * MiB
    assert with_child - alone >= 400 * MiB


def test_usage_grows_with_an_allocation_and_the_peak_remembers_it(fake_clock):
    monitor = MemoryMonitor(KernelLimits(), source="pss", clock=fake_clock)
    before = monitor.usage_bytes()
    block = np.ones(300 * MiB, dtype=np.uint8)
    during = monitor.usage_bytes()
    del block
    fake_clock.advance(1)
    after = monitor.usage_bytes()

    assert during - before >= 290 * MiB
    assert monitor.peak_bytes() == during
    assert after < during


def test_pss_is_read_exactly_on_a_slow_cadence_and_estimated_from_rss_between(fake_clock):
    monitor = MemoryMonitor(KernelLimits(), source="pss", clock=fake_clock)
    first = monitor.usage_bytes()
    readings = [monitor.usage_bytes() for _ in range(20)]  # a batch loop: 20 readings within one cadence
    assert monitor.exact_samples == 1
    assert max(abs(r - first) for r in readings) < 16 * MiB  # flat memory, flat estimate

    block = np.ones(200 * MiB, dtype=np.uint8)
    estimate = monitor.usage_bytes()
    assert monitor.exact_samples == 1
    fake_clock.advance(PSS_EVERY_S)
    exact = monitor.usage_bytes()
    del block

    assert monitor.exact_samples == 2
    assert estimate - first >= 190 * MiB  # private growth shows at once, without waiting for the exact reading
    assert abs(estimate - exact) < 16 * MiB


def test_every_reading_is_exact_near_the_limit(fake_clock):
    current = process_tree_memory(os.getpid(), "pss")
    monitor = MemoryMonitor(KernelLimits(memory_bytes=int(current / 0.9)), source="pss", clock=fake_clock)
    for _ in range(5):
        monitor.usage_bytes()

    assert monitor.exact_samples == 5


def test_peak_forgets_samples_older_than_the_window(fake_clock):
    monitor = MemoryMonitor(KernelLimits(), source="rss", window_s=10, clock=fake_clock)
    block = np.ones(200 * MiB, dtype=np.uint8)
    high = monitor.usage_bytes()
    del block
    fake_clock.advance(11)
    low = monitor.usage_bytes()

    assert monitor.peak_bytes() == low < high
    assert monitor.peak_bytes(window_s=float("inf")) == high


def test_limit_and_headroom_come_from_the_profile_without_a_cgroup_limit():
    limits = KernelLimits().with_overrides(memory="64GiB")
    monitor = MemoryMonitor(limits, source="pss")

    expected = limits.memory_bytes if cgroup_memory() is None else min(limits.memory_bytes, cgroup_memory()[1])
    assert monitor.limit_bytes == expected
    assert 0 < monitor.headroom_bytes() < monitor.limit_bytes


def test_cgroup_v2_limit_and_usage_are_read_without_page_cache(tmp_path):
    (tmp_path / "memory.max").write_text("1073741824\n")
    (tmp_path / "memory.current").write_text("600000000\n")
    (tmp_path / "memory.stat").write_text("anon 400000000\ninactive_file 100000000\n")

    assert cgroup_memory(tmp_path) == (500_000_000, 1_073_741_824)


def test_cgroup_v1_limit_is_read(tmp_path):
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory/memory.limit_in_bytes").write_text("2147483648\n")
    (tmp_path / "memory/memory.usage_in_bytes").write_text("1000\n")

    assert cgroup_memory(tmp_path) == (1000, 2**31)


def test_an_unlimited_cgroup_is_no_limit(tmp_path):
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.current").write_text("123\n")

    assert cgroup_memory(tmp_path) is None
