"""The body-only base model: trained once per (pool, model, schedule) and cached.

It is what a team starts from — a pose model that knows the body points of their COCO-style
data but has never seen a spine label (spine points come from the geometric prior). Training it
is the expensive step of a simulation, so every strategy and seed starts from the same copy.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from cals.data.coco import ANNOTATIONS
from cals.model.checkpoint import cache_dir
from cals.registry import Registry, Version
from cals.schema import Schema

log = logging.getLogger(__name__)


def base_model(body_view: Path, schema: Schema, *, model: str, iters: int,
               batch_size: int | None = None) -> Version:
    """The cached base version for this body-only dataset, training it on first use."""
    key = _key(body_view, schema, model, iters, batch_size)
    registry = Registry(cache_dir() / "base-models" / key)
    current = registry.current()
    if current is not None:
        log.info("using cached base model %s (%s)", current.id, registry.root)
        return current
    from cals.model.train import train

    log.info("training the body-only base model once (%d iterations); cached in %s", iters, registry.root)
    version = train(body_view, registry, config=model, iters=iters, schema=schema, batch_size=batch_size)
    return registry.promote(version.id, reason="body-only base model")


def seed_registry(registry: Registry, base: Version) -> Version:
    """Start an empty registry from the base version (as a deployment starts from its initial model)."""
    from cals.model.train import version_files

    files = version_files(base.path)
    # without its training data, as a deployment's initial model: the body-only pool it learnt from
    # stands for COCO, not for frames a person labelled (the pose and core-set strategies read it)
    meta = {k: v for k, v in base.meta.items() if k not in ("id", "parent", "files", "created_at", "train_data")}
    version = registry.add(files, meta={**meta, "copied_from": str(base.path)})
    return registry.promote(version.id, reason="base model")


def _key(body_view: Path, schema: Schema, model: str, iters: int, batch_size: int | None) -> str:
    digest = hashlib.sha256()
    digest.update((body_view / ANNOTATIONS).read_bytes())
    digest.update(json.dumps([schema.names, model, iters, batch_size, "with model.onnx"]).encode())
    # the config's text too: a changed augmentation or head under the same name ("cpu") is another model
    from cals.model.config import config_path

    digest.update(config_path(model).read_bytes())
    return digest.hexdigest()[:16]
