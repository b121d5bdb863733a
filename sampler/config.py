"""Sampler settings: `cals.settings.SamplerEnv` (defaults, then CALS_* environment variables, then
overrides from tests), plus the checks only the sampler makes. Fails at start naming the variable.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from cals.sampling.strategies import check_settings
from cals.settings import SamplerEnv, SettingsError

REQUIRED = ("API_TOKEN", "REGISTRY")
_WHY = {"API_TOKEN": "the bearer token the trainer and `make sample` send; there is no default",
        "REGISTRY": "the model registry the trainer promotes into"}


def load_config(overrides: Mapping[str, Any] | None = None, *,
                required: tuple[str, ...] = REQUIRED) -> SamplerEnv:
    """The sampler's settings, checked; CVAT's are checked when the sampler connects.

    The `round` command passes required=("REGISTRY",): it serves no requests, so needs no token.
    """
    settings = SamplerEnv.load(**dict(overrides or {}))
    check_settings(settings.SAMPLER_STRATEGY, settings.SAMPLER_UNCERTAINTY)
    for key in required:
        settings.require(key, why=_WHY[key])
    if not Path(str(settings.REGISTRY)).is_dir():
        raise SettingsError(f"CALS_REGISTRY {settings.REGISTRY!r} is not a folder")
    if settings.POOL != "cvat" and not (Path(settings.POOL) / "annotations.json").is_file():
        raise SettingsError(f"CALS_POOL must be 'cvat' or a COCO folder with annotations.json, got {settings.POOL!r}")
    return settings
