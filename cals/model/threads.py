"""Threads per process: torch's and ONNX Runtime's pools sized to this process's share of the cores.

Both libraries default to every core. Several model processes on one host (the function's Nuclio
workers, the sampler's scoring ranks, torchrun's training processes) would then each run as many
threads as there are cores and fight over them; each gets cores / processes instead. CALS_THREADS
(ModelEnv.THREADS) > 0 sets the count outright.
"""
from __future__ import annotations

import os

_configured: int | None = None


def host_cores() -> int:
    """Cores this process may use: its CPU affinity (taskset, a container's cpuset), capped by a
    cgroup v2 CPU quota (a Kubernetes CPU limit: 1.5 CPUs gives 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, int(quota))) if quota else cores


def cgroup_cpu_quota(path: str = "/sys/fs/cgroup/cpu.max") -> float | None:
    """CPUs the cgroup v2 quota allows ("200000 100000" is 2.0), None without a quota."""
    try:
        quota, period = open(path).read().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def share_of_cores(processes: int) -> int:
    """Threads for one of `processes` processes sharing this host: at least one."""
    return max(1, host_cores() // max(1, processes))


def configure(processes: int = 1, threads: int | None = None) -> int:
    """Size torch's intra-op pool for this process and remember the count for the ONNX Runtime
    sessions built after it (`session_threads`). `threads`, else $CALS_THREADS, else the share."""
    import torch

    from cals.settings import ModelEnv

    global _configured
    count = threads or ModelEnv.load().THREADS or share_of_cores(processes)
    torch.set_num_threads(count)
    _configured = count
    return count


def session_threads() -> int:
    """intra_op_num_threads for a new ONNX Runtime session: the configured count, else $CALS_THREADS,
    else 0 (ONNX Runtime's default, every core: one model process per host)."""
    if _configured:
        return _configured
    from cals.settings import ModelEnv

    return ModelEnv.load().THREADS
