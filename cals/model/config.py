"""mmengine configs for CALS models, completed from the keypoint schema and the data."""
from __future__ import annotations

import copy
import os
from pathlib import Path

from mmengine.config import Config

from cals.data.coco import ANNOTATIONS, IMAGES
from cals.errors import CalsError
from cals.schema import Schema

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
CONFIGS = {
    "cpu": "cpu_res18n-hm_b16-600it_128x96.py",
    "rtmpose-m": "rtmpose-m_simcc_b64-90e_256x192.py",
}


def config_path(name: str) -> Path:
    """A short name from CONFIGS, or a path to an mmengine config file."""
    if name in CONFIGS:
        return CONFIG_DIR / CONFIGS[name]
    path = Path(name)
    if path.suffix == ".py" and path.is_file():
        return path
    raise CalsError(f"unknown config {name!r}; choose one of {sorted(CONFIGS)} or a .py config file")


def same_config(a: str, b: str) -> bool:
    """Whether two config names or paths are one config: the same file, however it is named."""
    return config_path(a).samefile(config_path(b))


def build_config(name: str, schema: Schema, *, data_root: str | os.PathLike | None = None,
                 epochs: int | None = None, iters: int | None = None,
                 work_dir: str | os.PathLike | None = None, batch_size: int | None = None,
                 processes: int = 1) -> Config:
    """Load a config and make it match the schema (point count, metainfo) and the data.

    `epochs` or `iters` override the config's schedule; LR schedulers are
    rescaled so a shorter fine-tuning run still warms up and decays. `processes`: training
    processes on this host (torchrun's), which share its cores among their data-loader workers.
    """
    cfg = Config.fromfile(config_path(name))
    k = schema.num_keypoints
    cfg.model.head.out_channels = k
    metainfo = schema.mmpose_metainfo()
    cfg.train_dataloader.dataset.metainfo = metainfo
    cfg.test_dataloader.dataset.metainfo = metainfo
    if data_root is not None:
        cfg.train_dataloader.dataset.data_root = str(data_root)
        cfg.train_dataloader.dataset.ann_file = ANNOTATIONS
        cfg.train_dataloader.dataset.data_prefix = dict(img=f"{IMAGES}/")
    if work_dir is not None:
        cfg.work_dir = str(work_dir)
    _fit_workers(cfg.train_dataloader, processes)
    if batch_size is not None:
        if batch_size < 1:
            raise CalsError(f"batch size must be positive, got {batch_size}")
        cfg.train_dataloader.batch_size = batch_size
    if epochs is not None or iters is not None:
        _set_schedule(cfg, epochs=epochs, iters=iters)
    return cfg


def mix_pool(cfg: Config, pool_root: str | os.PathLike, *, human_share: float, human_people: int,
             pool_people: int) -> int:
    """Train on the human set and the pool set (`cals.training.pool_set`) together, the human people
    repeated so that they make about `human_share` of the samples: a few dozen labelled frames are
    not drowned by a thousand pool frames. Returns the repeat count.

    Every sample of a top-down dataset is one person, so the share is counted in people; the same
    pipeline (augmentation) applies to both sets.
    """
    if not 0 < human_share < 1:
        raise CalsError(f"the human share of a mixed batch must be in (0, 1), got {human_share!r}")
    if human_people < 1 or pool_people < 1:
        raise CalsError("a mixed training needs people in both the human and the pool set")
    human = cfg.train_dataloader.dataset
    pool = copy.deepcopy(human)
    pool.data_root = str(pool_root)
    times = max(1, round(human_share / (1 - human_share) * pool_people / human_people))
    cfg.train_dataloader.dataset = dict(type="ConcatDataset", datasets=[
        dict(type="RepeatDataset", times=times, dataset=human), pool])
    return times


def _fit_workers(loader, processes: int = 1) -> None:
    """At most one data-loader process per 4 of a training process's cores. Each takes seconds to start and to stop, and
    on a small host it competes with training: on 2 cores, 100 iterations of the cpu config took
    19 s with one worker and 14 s with none; RTMPose-m's 4 workers cost 20 s of a 1-iteration run."""
    from cals.model.threads import share_of_cores

    spare = share_of_cores(processes) // 4
    if loader.get("num_workers", 0) > spare:
        loader.num_workers = spare
        loader.persistent_workers = spare > 0 and loader.get("persistent_workers", False)


def _set_schedule(cfg: Config, *, epochs: int | None, iters: int | None) -> None:
    if iters is not None:
        if iters < 1:
            raise CalsError(f"iterations must be positive, got {iters}")
        cfg.train_cfg = dict(by_epoch=False, max_iters=iters)
        cfg.train_dataloader.sampler = dict(type="InfiniteSampler", shuffle=True)
        total, by_epoch = iters, False
    else:
        if epochs < 1:
            raise CalsError(f"epochs must be positive, got {epochs}")
        cfg.train_cfg = dict(by_epoch=True, max_epochs=epochs)
        cfg.train_dataloader.sampler = dict(type="DefaultSampler", shuffle=True)
        total, by_epoch = epochs, True
    cfg.log_processor = dict(type="LogProcessor", window_size=20, by_epoch=by_epoch)
    cfg.param_scheduler = _scaled_schedule(cfg.param_scheduler, total, by_epoch)


def _scaled_schedule(schedulers: list, total: int, by_epoch: bool) -> list:
    """Keep the warm-up (in iterations, at most a tenth of an iteration budget), then one
    cosine decay to the end of training."""
    base = [dict(s) for s in schedulers]
    warm = next((s for s in base if s["type"] == "LinearLR"), None)
    cosine = next((s for s in base if s["type"] == "CosineAnnealingLR"), None)
    out, begin = [], 0
    if warm is not None:
        if not by_epoch:
            warm["end"] = begin = max(1, min(warm["end"], total // 10))
        out.append(warm)
    if cosine is not None and total > begin:  # a budget spent in the warm-up has no decay
        # per-iteration steps either way; mmengine converts only epoch-based schedulers
        cosine.update(begin=begin, end=total, T_max=max(1, total - begin), by_epoch=by_epoch,
                      convert_to_iter_based=by_epoch)
        out.append(cosine)
    return out
