"""The model served before any spine model exists: COCO-17 body weights, spine from the prior.

On first start with an empty registry the function registers and promotes one
version built from a COCO-17 checkpoint (path or URL; the image's build step
downloads it): the 17 body channels are copied by name, the spine channels are
left untrained and the checkpoint says `spine_trained: False`, so the predictor
places the spine with the geometric prior. The trainer later fine-tunes from it.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import tempfile
from pathlib import Path
from typing import Iterator

from cals.errors import CalsError
from cals.registry import Registry, Version
from cals.schema import Schema, load_schema

log = logging.getLogger(__name__)


def ensure_initial_model(registry: Registry, checkpoint: str, *, config: str,
                         schema: Schema | None = None) -> Version:
    """The current version; when there is none, one registered from `checkpoint` and promoted.

    `config` must be the checkpoint's architecture (the function's CALS_CONFIG: rtmpose-m for the pinned one).

    A file lock makes concurrent workers register it once.
    """
    with _init_lock(registry):
        current = registry.current()
        if current is not None:
            return current
        version = register_initial_model(registry, checkpoint, config=config, schema=schema)
        return registry.promote(version.id, reason="initial model: COCO-17 body, spine from the prior")


def register_initial_model(registry: Registry, checkpoint: str, *, config: str,
                           schema: Schema | None = None) -> Version:
    """Add (not promote) a version whose body points come from a COCO-17 `checkpoint`."""
    from cals.model import mm_imports
    from cals.model.config import build_config
    from cals.model.checkpoint import load_checkpoint
    from cals.model.train import InitSource, init_checkpoint, version_files, write_version_files

    schema = schema or load_schema()
    mm_imports.setup()
    cfg = build_config(config, schema)
    with tempfile.TemporaryDirectory(prefix="cals-initial-") as tmp:
        work = Path(tmp)
        state, _ = load_checkpoint(init_checkpoint(cfg, schema, InitSource(checkpoint), work))
        meta = {"config": config, "keypoint_names": schema.names, "spine_trained": False,
                "init": checkpoint, "iterations": 0, "initial": True}
        folder = write_version_files(work / "candidate", cfg, schema, state, meta)
        version = registry.add(version_files(folder), meta=meta)
    log.info("registered initial model %s from %s", version.id, checkpoint)
    return version


@contextlib.contextmanager
def _init_lock(registry: Registry) -> Iterator[None]:
    path = registry.root / ".initial.lock"
    try:
        f = open(path, "a")
    except OSError as e:
        raise CalsError(f"cannot lock {path}: {e.strerror}") from None
    with f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)

