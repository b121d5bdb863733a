"""Train or fine-tune a top-down model with mmengine's Runner and register the result.

The Runner does the work; CALS prepares the config from the schema, initialises weights (a
registry version, a COCO-17 checkpoint, or nothing), and stores a self-contained registry version
(checkpoint, config, schema, metrics, data summary, parent).

Under torchrun every rank calls `train`: each joins the process group (cals.model.distributed), trains
on its share of the data with gradients averaged (mmengine's distributed samplers and DDP), and
rank 0 alone validates and registers; the others wait for it and return the same version.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from cals.model import distributed
from cals.data.coco import load_dataset
from cals.errors import CalsError
from cals.model import mm_imports
from cals.model.checkpoint import adapt_state_dict, fetch, load_checkpoint, save_checkpoint, \
    source_keypoint_names
from cals.model.config import build_config, config_path, mix_pool, same_config
from cals.model.onnx_export import export_onnx
from cals.model.pose_network import INT8_FILE, INT8_REPORT, ONNX_FILE
from cals.model.quantize import quantize_version
from cals.model.progress_hook import ProgressHook
from cals.registry import Registry, Version
from cals.schema import Schema, load_schema

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InitSource:
    """Where initial weights come from: a registry version or a checkpoint path/URL."""

    spec: str
    version: Version | None = None


def resolve_init(spec: str | None, registry: Registry) -> InitSource | None:
    if not spec:
        return None
    if (registry.root / "versions" / spec).is_dir():
        return InitSource(spec, registry.get(spec))
    if spec == "current":
        current = registry.current()
        if current is None:
            raise CalsError(f"--init current: registry {registry.root} has no current version")
        return InitSource(spec, current)
    return InitSource(spec)


def train(data_root: str | os.PathLike, registry: Registry, *, config: str | None = None,
          schema: Schema | None = None, epochs: int | None = None, iters: int | None = None,
          init: str | None = None, val_root: str | os.PathLike | None = None,
          progress: bool = True, work_dir: str | os.PathLike | None = None,
          batch_size: int | None = None, on_progress: Callable[[dict[str, Any]], None] | None = None,
          rank_report: str | os.PathLike | None = None, pool_root: str | os.PathLike | None = None,
          human_share: float = 0.5, int8_test_root: str | os.PathLike | None = None) -> Version:
    """Train on a COCO dataset folder and add the model to the registry (not promoted).

    `init`: a registry version id (or "current") to fine-tune, or a checkpoint
    path/URL (e.g. a COCO-17 mmpose release) whose shared points are copied.
    `config`: see `run_config`; None follows the `init` version.
    `on_progress` gets the iteration, epoch and loss while the Runner trains (ProgressHook; rank 0).
    `rank_report`: a folder where each rank writes its first iteration's frames and a digest of its
    final weights (cals.model.ddp.RankReportHook), to check a distributed setup.
    `pool_root`: a pool set (`cals.training.pool_set`) trained on beside `data_root`, its people
    making 1 - `human_share` of the samples; None, or a pool set with no person: `data_root` alone.
    `int8_test_root` (default `val_root`): the labelled set the version's int8 model, calibrated on
    `data_root`, is checked on before it may be served (cals.model.quantize); None: no int8 model.
    """
    source = resolve_init(init, registry)
    config = run_config(config, source)  # an unknown or mismatched config fails before any work starts
    schema = schema or load_schema()
    dataset = load_dataset(data_root, schema)
    summary = dataset.summary(schema)
    if not dataset.coco["annotations"]:
        raise CalsError(f"{data_root}: no annotations to train on")
    pool = load_dataset(pool_root, schema) if pool_root else None
    if pool is not None and pool.coco["annotations"]:
        summary["pool"] = {**pool.summary(schema), "human_share": human_share}
    else:
        pool = None
    mm_imports.setup()
    world = _join_process_group()
    main = distributed.is_main()
    if world > 1 and work_dir:  # ranks of one host share the caller's folder: one subfolder each
        work_dir = Path(work_dir) / f"rank-{distributed.rank()}"
    # a caller's work_dir (the trainer's run folder) is cleaned by the caller, also after a kill
    if work_dir:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    scratch = contextlib.nullcontext(work_dir) if work_dir else tempfile.TemporaryDirectory(prefix="cals-train-")
    with scratch as tmp:
        work = Path(tmp)
        cfg = build_config(config, schema, data_root=Path(data_root).resolve(), epochs=epochs,
                           iters=iters, work_dir=work, batch_size=batch_size,
                           processes=distributed.local_world_size() if world > 1 else 1)
        if pool is not None:
            summary["pool"]["human_repeats"] = mix_pool(
                cfg, Path(pool_root).resolve(), human_share=human_share,
                human_people=len(dataset.coco["annotations"]), pool_people=len(pool.coco["annotations"]))
        if world > 1:
            from cals.model.ddp import make_distributed
            make_distributed(cfg)
        if source is not None:
            cfg.load_from = str(init_checkpoint(cfg, schema, source, work))
        hook, state, seconds = _run(cfg, progress and main, on_progress if main else None, rank_report)
        cfg.load_from = None
        version_id = None
        if main:
            meta = _version_meta(config, schema, summary, source, hook, seconds, cfg)
            if val_root is not None:
                meta["metrics"] = _validate(cfg, schema, state, meta, val_root, work)
            if (int8_test_root or val_root) is not None:
                meta["int8"] = _quantize(cfg, schema, state, meta, data_root, int8_test_root or val_root, work)
            version_id = _register(registry, cfg, schema, state, meta, source, work).id
        return registry.get(distributed.broadcast(version_id))


def _join_process_group() -> int:
    """The world size: 1 alone, N under torchrun (after joining its process group)."""
    from cals.model.predict import default_device

    distributed.init(default_device())
    return distributed.world_size()


def _run(cfg, progress: bool, on_progress: Callable[[dict[str, Any]], None] | None = None,
         rank_report: str | os.PathLike | None = None):
    from mmengine.runner import Runner

    hook = ProgressHook(enabled=progress, report=on_progress)
    cfg.custom_hooks = list(cfg.get("custom_hooks", []))
    start = time.perf_counter()
    # stdout stays clean for the caller (`cals train` prints only the version id)
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        runner_cfg = cfg.copy()
        runner_cfg.test_dataloader = None  # kept in the config for inference_topdown only
        runner = Runner.from_cfg(runner_cfg)
        runner.register_hook(hook)
        if rank_report:
            from cals.model.ddp import RankReportHook
            runner.register_hook(RankReportHook(rank_report))
        runner.train()
    model = runner.model.module if hasattr(runner.model, "module") else runner.model
    return hook, model.state_dict(), time.perf_counter() - start


def init_checkpoint(cfg, schema: Schema, source: InitSource, work: Path) -> Path:
    """Write a checkpoint whose tensors match this model, mapping keypoints by name."""
    from mmpose.registry import MODELS

    model = MODELS.build(cfg.model)
    path = source.version.checkpoint if source.version is not None else fetch(source.spec)
    state, meta = load_checkpoint(path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if source.version is not None:
        names = load_schema(source.version.schema).names
    else:
        names = source_keypoint_names(meta, keypoint_count(state, model, source.spec))
    target = model.state_dict()
    adapted, report = adapt_state_dict(state, names, target, schema.names)
    fitted = report["copied"] + report["keypoint_mapped"]
    if fitted < len(target) / 2:  # a few generic tensors of equal shape do not make a starting point
        raise CalsError(f"--init {source.spec}: only {fitted} of this model's {len(target)} weights fit it "
                        f"(config {Path(cfg.filename).name}): a checkpoint of another architecture?")
    return save_checkpoint(adapted, work / "init.pth", {"init_report": report})


def run_config(config: str | None, source: InitSource | None) -> str:
    """The config a run trains. A registry version's weights fit only its own config, so a run from
    one follows it; an explicit `config` must resolve to the same file ("cpu" and the path of its file
    are one config). Without a version to start from: `config`, else $CALS_CONFIG (default cpu)."""
    from cals.settings import ModelEnv

    version = source.version if source else None
    if version is None:
        config = config or ModelEnv.load().CONFIG
        config_path(config)
        return config
    own = version_config(version)
    if config is None:
        env = ModelEnv.load()
        if "CONFIG" in env.model_fields_set and not same_config(env.CONFIG, own):
            logger.warning("CALS_CONFIG=%s is for a model with no version to start from; %s keeps its own "
                           "config %r", env.CONFIG, version.id, own)
        logger.info("training from %s with its own config %r", version.id, own)
        return own
    if not same_config(config, own):
        raise CalsError(f"--init {source.spec}: version {version.id} is a {own!r} model and --config {config!r} "
                        f"is another config; leave --config out to fine-tune it with its own")
    return config


def version_config(version: Version) -> str:
    """A version's own config: the name or file it was trained with where that resolves here, else
    the config.py stored with it (a file of another machine, a config since removed)."""
    name = version.meta.get("config")
    try:
        if name:
            config_path(name)
            return name
    except CalsError:
        logger.warning("version %s was trained with config %r, not found here: using its stored config.py",
                       version.id, name)
    return str(version.path / "config.py")


def keypoint_count(state: dict, model, spec: str) -> int:
    """Keypoints of a checkpoint, read from the tensor of this model's keypoint layer: the head's
    `final_layer` (one output channel per point) in mmpose's heatmap and SimCC heads alike, whatever
    order the checkpoint lists its tensors in (a SimCC head's last tensors are `cls_x`/`cls_y`)."""
    layer = getattr(getattr(model, "head", None), "final_layer", None)
    names = [f"head.final_layer.{n}" for n, _ in layer.named_parameters()] if layer is not None else []
    key = next((n for n in names if n.endswith("weight")), None)
    if key is None:
        raise CalsError(f"--init {spec}: this model's head has no keypoint layer (head.final_layer)")
    if key not in state:
        raise CalsError(f"--init {spec}: the checkpoint has no {key}: is it a checkpoint of this architecture?")
    return int(state[key].shape[0])


def _version_meta(config: str, schema: Schema, summary: dict, source: InitSource | None,
                  hook: ProgressHook, seconds: float, cfg) -> dict[str, Any]:
    losses = hook.losses
    window = max(1, min(20, len(losses) // 5))
    return {
        "config": config,
        "keypoint_names": schema.names,
        "train_data": summary,
        "spine_trained": summary["labelled_points"].get("spine", 0) > 0 or bool(
            source and source.version and source.version.meta.get("spine_trained")),
        "init": source.spec if source else None,
        "iterations": len(losses),
        "batch_size": cfg.train_dataloader.batch_size,  # per process
        "world_size": distributed.world_size(),
        "train_seconds": round(seconds, 2),
        "loss": {"first": _mean(losses[:window]), "last": _mean(losses[-window:])},
        "schedule": dict(cfg.train_cfg),
    }


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 8) if values else None


def _validate(cfg, schema, state, meta, val_root, work: Path) -> dict:
    from cals.model.evaluation import evaluate_predictor
    from cals.model.predict import Predictor

    version_dir = write_version_files(work / "candidate", cfg, schema, state, meta)
    predictor = Predictor(version_dir)
    return evaluate_predictor(predictor, val_root)


def _quantize(cfg, schema, state, meta, data_root, test_root, work: Path) -> dict:
    folder = work / "candidate"
    if not (folder / "checkpoint.pth").is_file():
        write_version_files(folder, cfg, schema, state, meta)
    return quantize_version(folder, data_root, test_root)


VERSION_FILES = ("checkpoint.pth", "config.py", "schema.yaml", ONNX_FILE, INT8_FILE, INT8_REPORT)


def write_version_files(folder: Path, cfg, schema: Schema, state, meta) -> Path:
    """A version's files, ONNX export included, in `folder` (then evaluated and registered as is)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(state, folder / "checkpoint.pth", {k: meta[k] for k in ("keypoint_names", "spine_trained")})
    cfg.dump(str(folder / "config.py"))
    (folder / "schema.yaml").write_text(yaml.safe_dump(schema.to_dict(), sort_keys=False))
    export_onnx(folder)
    return folder


def version_files(folder: Path) -> dict[str, Path]:
    """{stored name: path} of the version files written in `folder` (the ONNX models only if made)."""
    return {name: folder / name for name in VERSION_FILES if (folder / name).is_file()}


def _register(registry: Registry, cfg, schema, state, meta, source, work: Path) -> Version:
    folder = work / "candidate"
    if not (folder / "checkpoint.pth").is_file():
        write_version_files(folder, cfg, schema, state, meta)
    files = version_files(folder)
    parent = source.version.id if source and source.version else None
    version = registry.add(files, meta=meta, parent=parent)
    logger.info("registered %s (%d iterations, %.0f s)", version.id, meta["iterations"],
                meta["train_seconds"])
    return version
