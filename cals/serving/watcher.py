"""Serve the registry's current model, switching when another one is promoted.

Each request asks `ModelWatcher.get()` for a predictor and keeps that object for
its whole run, so a switch never changes the model under a request in flight.
The check is one small file read (current.json); a promoted version is loaded
by the first request that sees it, under a lock so it is loaded once (requests
arriving during that load are served by the previous model). A version
that fails to load is logged and remembered, and the previous model keeps serving.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Generic, TypeVar

from cals.errors import CalsError
from cals.model.memory import release_freed_memory
from cals.registry import Registry, Version

log = logging.getLogger(__name__)
M = TypeVar("M")


class NoModel(CalsError):
    """No model can serve yet (empty registry and no initial model); answered with 503."""


class ModelWatcher(Generic[M]):
    """The loaded model of the registry's current version; `load(version)` builds one."""

    def __init__(self, registry: Registry, load: Callable[[Version], M]) -> None:
        self.registry = registry
        self._load = load
        self._lock = threading.Lock()
        self._model: M | None = None
        self._model_id: str | None = None
        self._failed: dict[str, str] = {}  # version id -> load error

    @property
    def version_id(self) -> str | None:
        return self._model_id

    def get(self) -> M:
        """The model of the current version (or the last one that loaded)."""
        try:
            current = self.registry.current()
        except Exception as e:  # a broken registry must not take the served model down
            log.error("cannot read the current version of %s: %s", self.registry, e)
            current = None
        if current is not None and current.id != self._model_id and current.id not in self._failed:
            # while another request loads it, the others keep serving the old model
            if self._lock.acquire(blocking=self._model is None):
                try:
                    if current.id != self._model_id and current.id not in self._failed:
                        self._switch(current)
                finally:
                    self._lock.release()
        if self._model is None:
            reason = "; ".join(f"{k}: {v}" for k, v in self._failed.items())
            raise NoModel(f"no model to serve: registry {str(self.registry.root)!r} has "
                          + (f"no loadable version ({reason})" if reason else "no current version"))
        return self._model

    def _switch(self, version: Version) -> None:
        try:
            model = self._load(version)
        except Exception as e:
            self._failed[version.id] = str(e) or type(e).__name__
            log.exception("version %s failed to load; still serving %s", version.id, self._model_id)
            return
        log.info("serving %s (was %s)", version.id, self._model_id)
        self._model, self._model_id = model, version.id
        release_freed_memory()  # the replaced model's heap, else a process grows at every promotion
