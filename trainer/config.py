"""Trainer configuration: defaults in code, then `CALS_*` environment variables, then overrides
(tests). `load` checks everything once, at start, and names the variable that is missing or wrong.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cals.cvat.client import CvatSettings, parse_project_id
from cals.cvat.trigger import JobTrigger
from cals.errors import CalsError
from cals.model.config import config_path
from cals.registry import Registry
from cals.schema import load_schema
from cals.training.effort import DEFAULT_TOLERANCE
from cals.training.labelled_set import DEFAULT_VAL_FRACTION
from cals.training.promotion import DEFAULT_MARGIN, DEFAULT_METRIC
from cals.training.run import RunSettings

PREFIX = "CALS_"
REQUIRED = ("CVAT_URL", "WEBHOOK_SECRET", "API_TOKEN", "REGISTRY", "DATA")
# name (without CALS_) -> default; None means "no default" (required, or optional when not in REQUIRED)
DEFAULTS: dict[str, str | None] = {
    "CVAT_URL": None, "CVAT_USER": None, "CVAT_PASSWORD": None, "CVAT_TOKEN": None,
    "CVAT_POLL_SECONDS": "2",
    "WEBHOOK_SECRET": None, "API_TOKEN": None, "REGISTRY": None, "DATA": None,
    "QUEUE_DB": None,  # default: $CALS_DATA/queue.sqlite3
    "JOB_TRIGGER": "state:completed", "TRAIN_CONFIG": "cpu", "TRAIN_ITERS": "100",
    "TRAIN_BATCH_SIZE": None,  # default: the model config's
    "PROMOTE_MARGIN": str(DEFAULT_MARGIN), "PROMOTE_METRIC": DEFAULT_METRIC, "VAL_FRACTION": str(DEFAULT_VAL_FRACTION),
    "EFFORT_TOLERANCE": str(DEFAULT_TOLERANCE), "SAMPLER_URL": None, "TRAINER_BIND": "0.0.0.0:8010",
    "WORKER": "1", "WORKER_POLL_SECONDS": "5",
    "PROJECT_ID": None,  # when set, the start-up check verifies this project's skeleton label
    "FUNCTION_NAME": None,  # the Nuclio function the start-up check looks for (default: the CPU or GPU build)
}


class ConfigError(CalsError):
    """A setting is missing or malformed; the message names its environment variable."""


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


def raw_config(overrides: Mapping[str, Any] | None = None,
               env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Defaults, then CALS_* environment variables, then `overrides` (keys without the prefix)."""
    env = os.environ if env is None else env
    config: dict[str, Any] = dict(DEFAULTS)
    config.update({k: env[PREFIX + k] for k in DEFAULTS if env.get(PREFIX + k)})
    config.update(overrides or {})
    return config


def load(config: Mapping[str, Any]) -> TrainerSettings:
    """Validate a raw config into settings; raises ConfigError naming the CALS_ variable."""
    missing = [PREFIX + k for k in REQUIRED if not config.get(k)]
    if missing:
        raise ConfigError(f"missing configuration: set {', '.join(missing)} (see trainer/README.md)")
    cvat = _checked("CVAT_URL", lambda: CvatSettings(
        url=str(config["CVAT_URL"]), user=_opt(config, "CVAT_USER"), password=_opt(config, "CVAT_PASSWORD"),
        token=_opt(config, "CVAT_TOKEN"), poll_seconds=_number(config, "CVAT_POLL_SECONDS", 0.01)))
    _checked("CVAT_URL", cvat.check)
    data = Path(str(config["DATA"]))
    registry = _checked("REGISTRY", lambda: Registry(str(config["REGISTRY"])))
    _checked("DATA", lambda: data.mkdir(parents=True, exist_ok=True))
    iters = int(_number(config, "TRAIN_ITERS", 1))
    run = RunSettings(
        cvat=cvat, registry=registry, data_root=data, schema=_checked("SCHEMA", load_schema),
        trigger=_checked("JOB_TRIGGER", lambda: JobTrigger.parse(str(config["JOB_TRIGGER"]))),
        config=str(config["TRAIN_CONFIG"]), iters=iters,
        batch_size=int(_number(config, "TRAIN_BATCH_SIZE", 1)) if _opt(config, "TRAIN_BATCH_SIZE") else None,
        margin=_number(config, "PROMOTE_MARGIN", 0.0), metric=str(config["PROMOTE_METRIC"]),
        val_fraction=_number(config, "VAL_FRACTION", 0.0, 0.99),
        effort_tolerance=_number(config, "EFFORT_TOLERANCE", 0.0, 1.0),
        sampler_url=_opt(config, "SAMPLER_URL"), api_token=str(config["API_TOKEN"]))
    _checked("TRAIN_CONFIG", lambda: config_path(run.config))
    return TrainerSettings(
        run=run, queue_db=Path(str(config.get("QUEUE_DB") or data / "queue.sqlite3")),
        webhook_secret=str(config["WEBHOOK_SECRET"]), api_token=str(config["API_TOKEN"]),
        bind=str(config["TRAINER_BIND"]), worker=str(config["WORKER"]).lower() not in ("0", "false", "no"),
        worker_poll_seconds=_number(config, "WORKER_POLL_SECONDS", 0.01),
        project_id=parse_project_id(_opt(config, "PROJECT_ID")),
        function_name=_opt(config, "FUNCTION_NAME"))


def _opt(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    return str(value) if value not in (None, "") else None


def _number(config: Mapping[str, Any], key: str, low: float, high: float | None = None) -> float:
    try:
        value = float(config[key])
    except (TypeError, ValueError):
        raise ConfigError(f"{PREFIX}{key} must be a number, got {config.get(key)!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{PREFIX}{key} must be {bounds}, got {value}")
    return value


def _checked(key: str, make):
    """Run `make()`; turn its failure into a ConfigError that names CALS_<key>."""
    try:
        return make()
    except ConfigError:
        raise
    except (CalsError, OSError, ValueError) as exc:
        raise ConfigError(f"{PREFIX}{key}: {exc}") from None
