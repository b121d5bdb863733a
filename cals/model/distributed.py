"""torch.distributed for CALS's multi-process work, as torchrun launches it.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE and the rendezvous address; `init`
joins the process group with the backend that fits the device (nccl on GPUs, gloo on CPUs) and
sizes the process's threads to its share of the host. A process started without torchrun is a world
of one and every helper here is a no-op, so the same code runs alone or as one rank of many.

mmengine's own `init_dist` is not used: it calls `torch.cuda.set_device`, which fails on a CPU host.
"""
from __future__ import annotations

import datetime
import os
from typing import Any

# rank 0 evaluates, exports and registers while the others wait: longer than gloo's 30-minute default
TIMEOUT = datetime.timedelta(hours=2)


def launched() -> bool:
    """Whether this process is one of several that torchrun (or another launcher) started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_world_size() -> int:
    """Processes of this job on this host (they share its cores)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


def is_main() -> bool:
    return rank() == 0


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def init(device: str = "cpu") -> bool:
    """Join torchrun's process group (once; returns whether this run is distributed).

    On a GPU each local rank takes its own device (cuda:LOCAL_RANK); on a CPU host each rank's
    torch and ONNX Runtime threads are its share of the cores.
    """
    import torch
    import torch.distributed as dist

    from cals.model import threads

    if not launched():
        return False
    if dist.is_initialized():
        return True
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    else:
        threads.configure(local_world_size())
    dist.init_process_group(backend=backend_for(device), timeout=TIMEOUT)
    return True


def broadcast(value: Any = None, src: int = 0) -> Any:
    """`value` of rank `src` on every rank (any picklable object); itself in a world of one."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (a process that exits without it warns about a leaked group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
