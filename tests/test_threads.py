"""Threads per process: a process's share of the cores it may use, never zero, quota-aware."""
from __future__ import annotations

import pytest

from cals.model import threads


@pytest.mark.parametrize("text, cpus", [("max 100000\n", None), ("200000 100000\n", 2.0), ("150000 100000", 1.5),
                                        ("garbage", None)])
def test_cgroup_quota_is_read_as_cpus(tmp_path, text, cpus):
    (tmp_path / "cpu.max").write_text(text)
    assert threads.cgroup_cpu_quota(str(tmp_path / "cpu.max")) == cpus


def test_a_cpu_limit_caps_the_cores(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: 1.5)
    assert threads.host_cores() == 1  # a pod limited to 1.5 CPUs on a 16-core node
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: None)
    assert threads.host_cores() == 16


@pytest.mark.parametrize("cores, processes, share", [(2, 1, 2), (2, 2, 1), (2, 3, 1), (16, 2, 8), (16, 3, 5)])
def test_each_process_gets_its_share(monkeypatch, cores, processes, share):
    monkeypatch.setattr(threads, "host_cores", lambda: cores)
    assert threads.share_of_cores(processes) == share


def test_configure_sizes_torch_and_later_onnx_sessions(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "host_cores", lambda: 4)
    monkeypatch.delenv("CALS_THREADS", raising=False)
    try:
        assert threads.configure(2) == 2
        assert torch.get_num_threads() == 2 and threads.session_threads() == 2
        monkeypatch.setenv("CALS_THREADS", "3")
        assert threads.configure(2) == 3, "CALS_THREADS sets the count outright"
    finally:
        torch.set_num_threads(before)
        monkeypatch.setattr(threads, "_configured", None)
