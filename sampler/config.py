"""Sampler settings: defaults here, then CALS_* environment variables, then test overrides.

Every setting, its variable and default is listed in DEFAULTS (and in sampler/README.md).
`load_config` fails at start with the name of a missing or malformed variable.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from cals.cvat.client import parse_project_id
from cals.errors import CalsError
from cals.sampling.strategies import STRATEGIES

# key: (environment variable, default, type). None default + required → must be set.
DEFAULTS: dict[str, tuple[str, Any, type]] = {
    "API_TOKEN": ("CALS_API_TOKEN", None, str),  # bearer token for every endpoint that changes things
    "REGISTRY": ("CALS_REGISTRY", None, str),  # model registry root
    "DATA": ("CALS_DATA", "cals-data", str),  # score cache, round reports, pre-annotation records
    "POOL": ("CALS_POOL", "cvat", str),  # "cvat" (the project's pool task) or a local COCO folder
    "POOL_TASK": ("CALS_POOL_TASK", "pool", str),  # name of the CVAT task holding the unlabelled pool
    "PROJECT_ID": ("CALS_PROJECT_ID", None, parse_project_id),  # CVAT project (a request may name another)
    "STRATEGY": ("CALS_SAMPLER_STRATEGY", "hybrid", str),
    "UNCERTAINTY": ("CALS_SAMPLER_UNCERTAINTY", "entropy", str),  # hybrid's shortlist strategy
    "REDUCE": ("CALS_SAMPLER_REDUCE", "max", str),  # people → image: max | mean | sum
    "GROUP": ("CALS_SAMPLER_GROUP", "spine", str),  # schema point group scored ("all" = every point)
    "ROUND_SIZE": ("CALS_ROUND_SIZE", 50, int),
    "JOB_SIZE": ("CALS_JOB_SIZE", 10, int),
    "AUTO_OPEN": ("CALS_AUTO_OPEN", False, bool),  # open the next round when the trainer promotes
    "BATCH_SIZE": ("CALS_SAMPLER_BATCH", 16, int),
    "LABELLED": ("CALS_SAMPLER_LABELLED", None, str),  # COCO file for the pose strategy's shape space
    "DETECTOR": ("CALS_DETECTOR", None, str),  # person detector for frames without boxes
    "BIND": ("CALS_SAMPLER_BIND", "0.0.0.0:8090", str),  # gunicorn address for `sampler serve`
    "FUNCTION_NAME": ("CALS_FUNCTION_NAME", None, str),  # Nuclio function for the start-up check (None: CPU or GPU build)
}
REQUIRED = ("API_TOKEN", "REGISTRY")


def load_config(overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
                *, required: tuple[str, ...] = REQUIRED) -> dict[str, Any]:
    """Defaults, then environment, then overrides; validated (CVAT settings are checked separately).

    The `round` command passes required=("REGISTRY",): it serves no requests, so needs no token.
    """
    env = os.environ if env is None else env
    config: dict[str, Any] = {}
    for key, (var, default, kind) in DEFAULTS.items():
        raw = env.get(var)
        config[key] = default if raw in (None, "") else _parse(var, raw, kind)
    config.update(overrides or {})
    _validate(config, required)
    return config


def _parse(var: str, raw: str, kind: type) -> Any:
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise CalsError(f"{var} must be 1/0 (or true/false), got {raw!r}")
    try:
        return kind(raw)
    except ValueError:
        raise CalsError(f"{var} must be {kind.__name__}, got {raw!r}") from None


def _validate(config: dict[str, Any], required: tuple[str, ...]) -> None:
    for key in required:
        if not config.get(key):
            raise CalsError(f"set {DEFAULTS[key][0]} ({_WHY[key]})")
    if config["STRATEGY"] not in STRATEGIES:
        raise CalsError(f"CALS_SAMPLER_STRATEGY {config['STRATEGY']!r} is unknown; choose one of {sorted(STRATEGIES)}")
    for key in ("ROUND_SIZE", "JOB_SIZE", "BATCH_SIZE"):
        if config[key] < 1:
            raise CalsError(f"{DEFAULTS[key][0]} must be at least 1, got {config[key]}")
    if not Path(config["REGISTRY"]).is_dir():
        raise CalsError(f"CALS_REGISTRY {config['REGISTRY']!r} is not a folder")
    if config["POOL"] != "cvat" and not (Path(config["POOL"]) / "annotations.json").is_file():
        raise CalsError(f"CALS_POOL must be 'cvat' or a COCO folder with annotations.json, got {config['POOL']!r}")


_WHY = {"API_TOKEN": "the bearer token the trainer and `make sample` send; there is no default",
        "REGISTRY": "the model registry the trainer promotes into"}
