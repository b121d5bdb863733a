"""Computed numbers of the loop report, kept between page views and restarts.

A job's or a round's numbers depend only on its pre-annotation record and its final labels; both are
named by cheap stamps (the record file's size and mtime, the labelled frames' provenance), so a page
view recomputes only what a run changed since the last one. The file is a cache: losing it costs
time, never a number.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable

from cals.durable import write_json_atomic

log = logging.getLogger(__name__)
MAX_ENTRIES = 50_000


class NumbersCache:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, Any] = self._read()
        self._dirty = False

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
        with self._lock:
            if digest in self._entries:
                return self._entries[digest]
        value = compute()
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = value
            self._dirty = True
        return value

    def save(self) -> None:
        """Write what was computed since the last save; a failure (full disk) is logged, not raised."""
        if self.path is None:
            return
        with self._lock:
            if not self._dirty:
                return
            entries, self._dirty = dict(self._entries), False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, entries, indent=None)
        except OSError as exc:
            log.warning("loop report: could not keep computed numbers in %s: %s", self.path, exc)

    def _read(self) -> dict[str, Any]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            entries = json.loads(self.path.read_text())
            return entries if isinstance(entries, dict) else {}
        except (OSError, ValueError) as exc:
            log.warning("loop report: ignoring unreadable cache %s: %s", self.path, exc)
            return {}
