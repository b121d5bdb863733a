"""Trainer configuration: `cals.settings.TrainerEnv` (defaults, then `CALS_*` environment variables,
then overrides from tests) checked once, at start, into the objects the trainer runs with. Every
failure names the variable that is missing or wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cals.cvat.client import CvatSettings
from cals.cvat.trigger import JobTrigger
from cals.errors import CalsError
from cals.model.config import config_path
from cals.registry import Registry
from cals.schema import load_schema
from cals.settings import PREFIX, SettingsError, TrainerEnv
from cals.training.pool_set import PoolTraining
from cals.training.run import RunSettings

REQUIRED = ("CVAT_URL", "WEBHOOK_SECRET", "API_TOKEN", "REGISTRY", "DATA")


@dataclass(frozen=True)
class TrainerSettings:
    run: RunSettings
    queue_db: Path
    webhook_secret: str
    api_token: str
    bind: str
    worker: bool
    worker_poll_seconds: float
    project_id: int | None
    function_name: str | None
    catchup_seconds: float = 0.0  # 0: no catch-up


def load(overrides: Mapping[str, Any] | None = None) -> TrainerSettings:
    """The environment's settings (then `overrides`, keys without the prefix), validated and built."""
    env = TrainerEnv.load(**dict(overrides or {}))
    env.require(*REQUIRED, why="see trainer/README.md")
    cvat = _checked("CVAT_URL", lambda: CvatSettings.from_env(env))
    data = Path(env.DATA)
    registry = _checked("REGISTRY", lambda: Registry(str(env.REGISTRY)))
    _checked("DATA", lambda: data.mkdir(parents=True, exist_ok=True))
    run = RunSettings(
        cvat=cvat, registry=registry, data_root=data, schema=_checked("SCHEMA", load_schema),
        trigger=_checked("JOB_TRIGGER", lambda: JobTrigger.parse(env.JOB_TRIGGER)),
        config=env.CONFIG, iters=env.TRAIN_ITERS, batch_size=env.TRAIN_BATCH_SIZE,
        margin=env.PROMOTE_MARGIN, metric=env.PROMOTE_METRIC, confidence=env.PROMOTE_CONFIDENCE,
        val_fraction=env.VAL_FRACTION,
        effort_tolerance=env.EFFORT_TOLERANCE, sampler_url=env.SAMPLER_URL, api_token=str(env.API_TOKEN),
        train_procs=env.TRAIN_PROCS, pool=env.POOL, pool_task=env.POOL_TASK, project_id=env.PROJECT_ID,
        pool_training=_checked("HUMAN_SHARE", lambda: PoolTraining(
            labels=env.POOL_LABELS, pseudo=env.PSEUDO_LABELS, threshold=env.PSEUDO_THRESHOLD,
            human_share=env.HUMAN_SHARE)))
    _checked("CONFIG", lambda: config_path(run.config))
    if env.POOL != "cvat" and not (Path(env.POOL) / "annotations.json").is_file():
        raise SettingsError(f"CALS_POOL must be 'cvat' or a COCO folder with annotations.json, got {env.POOL!r}")
    return TrainerSettings(
        run=run, queue_db=Path(env.QUEUE_DB or data / "queue.sqlite3"),
        webhook_secret=str(env.WEBHOOK_SECRET), api_token=str(env.API_TOKEN), bind=env.TRAINER_BIND,
        worker=env.WORKER, worker_poll_seconds=env.WORKER_POLL_SECONDS, project_id=env.PROJECT_ID,
        function_name=env.FUNCTION_NAME, catchup_seconds=env.CATCHUP_SECONDS)


def _checked(key: str, make):
    """Run `make()`; turn its failure into a SettingsError that names CALS_<key>."""
    try:
        return make()
    except SettingsError:
        raise
    except (CalsError, OSError, ValueError) as exc:
        message = str(exc)
        raise SettingsError(message if message.startswith(PREFIX + key) else f"{PREFIX}{key}: {message}") from None
