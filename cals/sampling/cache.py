"""Scores and predictions cached by (image key, model version): a pool is rescored only when the model changes.

One SQLite file (stdlib, safe across the sampler's threads and processes). Per image and version it
holds the people predicted (boxes, points, point scores), the pooled backbone feature, and one
number per strategy `cache_id`; anything missing is computed and added, nothing is recomputed.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Iterable

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (version TEXT, key TEXT, people TEXT, features BLOB,
                                    PRIMARY KEY (version, key));
CREATE TABLE IF NOT EXISTS scores (version TEXT, key TEXT, strategy TEXT, value REAL,
                                   PRIMARY KEY (version, key, strategy));
"""


def cache_file(data: str | os.PathLike) -> Path:
    """The sampler's cache under the working data folder ($CALS_DATA), which the trainer shares: it
    reads the served version's predictions there for pseudo-labels."""
    return Path(data) / "sampler" / "scores.sqlite"


class ScoreCache:
    """`ScoreCache(path)`; `ScoreCache(None)` keeps nothing (every lookup misses)."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._db = None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.executescript(_SCHEMA)

    def lookup(self, version: str, keys: list[str], strategies: Iterable[str]
               ) -> dict[str, dict]:
        """{key: {"people": [...], "features": array|None, "scores": {cache_id: value}}} for cached keys."""
        if self._db is None or not keys:
            return {}
        marks = ",".join("?" * len(keys))
        wanted = set(strategies)
        out: dict[str, dict] = {}
        with self._lock:
            rows = self._db.execute(f"SELECT key, people, features FROM records WHERE version=? AND key IN ({marks})",
                                    [version, *keys]).fetchall()
            for key, people, feats in rows:
                out[key] = {"people": json.loads(people), "scores": {},
                            "features": None if feats is None else np.frombuffer(feats, dtype=np.float32)}
            for key, strategy, value in self._db.execute(
                    f"SELECT key, strategy, value FROM scores WHERE version=? AND key IN ({marks})",
                    [version, *keys]):
                if key in out and strategy in wanted:
                    out[key]["scores"][strategy] = value
        return out

    def store(self, version: str, entries: dict[str, dict]) -> None:
        """Write (or complete) the entries of one batch in one transaction."""
        if self._db is None or not entries:
            return
        with self._lock, self._db:
            for key, e in entries.items():
                feats = None if e.get("features") is None else np.asarray(e["features"], np.float32).tobytes()
                self._db.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)",
                                 (version, key, json.dumps(e["people"]), feats))
                self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)",
                                     [(version, key, s, float(v)) for s, v in e["scores"].items()])

    def people(self, version: str, key: str) -> list[dict] | None:
        """Cached predictions of one image (for pre-annotations and the contact sheet)."""
        found = self.lookup(version, [key], ())
        return found[key]["people"] if key in found else None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
