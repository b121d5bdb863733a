"""mmengine's Runner under torchrun, on GPUs and on CPUs: the launcher, the DDP wrapper, a rank's report.

mmengine wraps the model in MMDistributedDataParallel with `device_ids=[LOCAL_RANK]`, which
DistributedDataParallel rejects for a model on the CPU; the wrapper here passes device ids only for
a CUDA model. The process group is joined beforehand by `cals.model.distributed.init`, so the Runner's
own `init_dist` (which calls torch.cuda.set_device) is skipped.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mmengine.hooks import Hook
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS

from cals.model import distributed

WRAPPER = "CalsDistributedDataParallel"


@MODEL_WRAPPERS.register_module(name=WRAPPER, force=True)
class CalsDistributedDataParallel(MMDistributedDataParallel):
    """MMDistributedDataParallel that fits the device: one device id on a GPU, none on a CPU."""

    def __init__(self, module, device_ids=None, **kwargs):
        on_gpu = next(module.parameters()).device.type == "cuda"
        super().__init__(module=module, device_ids=device_ids if on_gpu else None, **kwargs)


def make_distributed(cfg) -> None:
    """Set a config for the process group this rank has joined: launcher, backend, wrapper."""
    import torch.distributed as dist

    cfg.launcher = "pytorch"
    cfg.env_cfg.dist_cfg = dict(backend=dist.get_backend())  # the group's, for the record: it is joined
    cfg.model_wrapper_cfg = dict(type=WRAPPER, broadcast_buffers=False, find_unused_parameters=False)


class RankReportHook(Hook):
    """Writes, per rank, what it trained on: the people (frame, annotation id) of its first iteration and a digest of its
    final weights (parameters; BatchNorm statistics stay per rank unless SyncBN). Equal digests with
    different frames show the gradients were averaged and the data was split."""

    priority = "VERY_LOW"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.first: list[dict] | None = None

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.first is None and data_batch is not None:  # top-down: one sample per person
            self.first = [{"frame": Path(s.img_path).name, "annotation": s.metainfo.get("id")}
                          for s in data_batch["data_samples"]]

    def after_train(self, runner) -> None:
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        self.folder.mkdir(parents=True, exist_ok=True)
        report = {"rank": distributed.rank(), "world_size": distributed.world_size(),
                  "first_iteration": self.first, "weights_sha256": weights_digest(model),
                  "iterations": runner.iter}
        (self.folder / f"rank-{report['rank']}.json").write_text(json.dumps(report, indent=1))


def weights_digest(model) -> str:
    """sha256 over the model's parameters in name order (bit-exact)."""
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
