"""The persistent run queue: CVAT jobs waiting to be learned from, and the runs that learn.

One SQLite file (stdlib sqlite3, WAL) so a crash or restart loses nothing: a webhook is recorded
before it is answered; a run row exists before any work starts and holds its targets until it
ends. Jobs that finish while a run is busy wait in `pending` and are all taken by the next run
(coalescing). `recover()` at start marks a run left `running` as `interrupted` and queues its
targets again. Deduplication is by event key (`cals.cvat.trigger.update_key`): a redelivered
webhook, or a catch-up of an update a webhook already brought, is recognised and dropped. A run made
from pending jobs names where they came from in its trigger ("webhook", "catch-up" or both).
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

QUEUED, RUNNING, SUCCEEDED, FAILED, INTERRUPTED = "queued", "running", "succeeded", "failed", "interrupted"
RUN_STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, INTERRUPTED)
TARGET_KINDS = ("projects", "tasks", "jobs")
WEBHOOK, CATCH_UP = "webhook", "catch-up"  # where a pending job came from

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (key TEXT PRIMARY KEY, job_id INTEGER, received_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending (job_id INTEGER PRIMARY KEY, task_id INTEGER, project_id INTEGER,
                                    queued_at TEXT NOT NULL, source TEXT NOT NULL DEFAULT 'webhook');
CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, state TEXT NOT NULL,
    trigger TEXT NOT NULL, targets TEXT NOT NULL, created_at TEXT NOT NULL, started_at TEXT,
    finished_at TEXT, phase TEXT, progress TEXT, result TEXT, error TEXT);
"""


@dataclass(frozen=True)
class Run:
    id: int
    state: str
    trigger: str
    targets: dict[str, list[int]]
    created_at: str
    started_at: str | None
    finished_at: str | None
    phase: str | None
    progress: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "trigger": self.trigger, "targets": self.targets,
                "created_at": self.created_at, "started_at": self.started_at,
                "finished_at": self.finished_at, "phase": self.phase, "progress": self.progress,
                "result": self.result, "error": self.error}


class RunQueue:
    """See the module docstring; every method is one short transaction, safe across threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        try:
            # once: WAL is stored in the file. Asked for in every transaction, it failed at once with
            # "database is locked" while another connection wrote (no busy wait for a mode change)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            if "source" not in {row[1] for row in db.execute("PRAGMA table_info(pending)")}:  # a queue from 0.x
                db.execute(f"ALTER TABLE pending ADD COLUMN source TEXT NOT NULL DEFAULT '{WEBHOOK}'")
        finally:
            db.close()

    # ---- recording work --------------------------------------------------
    def record_job_event(self, key: str, job_id: int, task_id: int | None, project_id: int | None, *,
                         source: str = WEBHOOK) -> str:
        """'duplicate' for a key seen before, 'coalesced' if the job already waits, else 'queued'."""
        with self._tx() as db:
            seen = db.execute("INSERT OR IGNORE INTO deliveries VALUES (?, ?, ?)", (key, job_id, _now()))
            if seen.rowcount == 0:
                return "duplicate"
            added = db.execute("INSERT OR IGNORE INTO pending VALUES (?, ?, ?, ?, ?)",
                               (job_id, task_id, project_id, _now(), source))
            return "queued" if added.rowcount else "coalesced"

    def known_updates(self, keys: list[str]) -> set[str]:
        """The keys among `keys` recorded before (learned, or waiting to be): one read, not one per key."""
        known: set[str] = set()
        with self._tx() as db:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                known |= {k for (k,) in db.execute(
                    f"SELECT key FROM deliveries WHERE key IN ({','.join('?' * len(chunk))})", chunk)}
        return known

    def request_run(self, targets: dict[str, list[int]], trigger: str) -> Run:
        """Queue a run for explicit targets (projects, tasks, jobs)."""
        clean = {k: sorted({int(v) for v in targets.get(k) or []}) for k in TARGET_KINDS}
        with self._tx() as db:
            cur = db.execute("INSERT INTO runs (state, trigger, targets, created_at, progress) "
                             "VALUES (?, ?, ?, ?, '{}')", (QUEUED, trigger, json.dumps(clean), _now()))
            return self._get(db, cur.lastrowid)

    def completions(self) -> dict[int, str]:
        """Job id -> when the trainer first heard of its completion (webhook or catch-up), UTC ISO 8601."""
        with self._tx() as db:
            return {job: at for job, at in db.execute("SELECT job_id, MIN(received_at) FROM deliveries "
                                                      "WHERE job_id IS NOT NULL GROUP BY job_id")}

    def pending_jobs(self) -> list[int]:
        with self._tx() as db:
            return [r[0] for r in db.execute("SELECT job_id FROM pending ORDER BY queued_at, job_id")]

    # ---- the worker's side -----------------------------------------------
    def claim_next(self) -> Run | None:
        """Start the oldest queued run (or one made from pending jobs), absorbing all pending jobs."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM runs WHERE state = ?", (RUNNING,)).fetchone():
                return None
            row = db.execute("SELECT id FROM runs WHERE state = ? ORDER BY id LIMIT 1", (QUEUED,)).fetchone()
            rows = db.execute("SELECT job_id, source FROM pending").fetchall()
            pending = [r[0] for r in rows]
            if row is None and not pending:
                return None
            sources = ", ".join(s for s in (WEBHOOK, CATCH_UP) if s in {r[1] for r in rows})
            if row is None:
                cur = db.execute("INSERT INTO runs (state, trigger, targets, created_at, progress) VALUES "
                                 "(?, ?, ?, ?, '{}')", (QUEUED, sources, json.dumps(_targets()), _now()))
                run_id = cur.lastrowid
            else:
                run_id = row[0]
            run = self._get(db, run_id)
            targets = run.targets
            targets["jobs"] = sorted(set(targets["jobs"]) | set(pending))
            trigger = run.trigger if row is None or not sources else f"{run.trigger}, {sources}"
            db.execute("DELETE FROM pending")
            db.execute("UPDATE runs SET state = ?, started_at = ?, targets = ?, trigger = ?, phase = 'starting' "
                       "WHERE id = ?", (RUNNING, _now(), json.dumps(targets), trigger, run_id))
            return self._get(db, run_id)

    def update_progress(self, run_id: int, phase: str, progress: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET phase = ?, progress = ? WHERE id = ? AND state = ?",
                       (phase, json.dumps(progress), run_id, RUNNING))

    def finish(self, run_id: int, *, result: dict[str, Any] | None = None, error: str | None = None) -> Run:
        """End a running run: succeeded with `result`, or failed with `error` (result kept too).

        A failed run's job updates are forgotten, so the next catch-up queues them again: a run that
        failed for a passing reason (a full disk, CVAT restarting mid-export) loses no job."""
        state = FAILED if error else SUCCEEDED
        with self._tx() as db:
            db.execute("UPDATE runs SET state = ?, finished_at = ?, result = ?, error = ? WHERE id = ?",
                       (state, _now(), json.dumps(result) if result is not None else None, error, run_id))
            run = self._get(db, run_id)
            if error and run.targets["jobs"]:
                db.execute(f"DELETE FROM deliveries WHERE job_id IN ({','.join('?' * len(run.targets['jobs']))})",
                           run.targets["jobs"])
            return run

    def recover(self) -> list[Run]:
        """Mark runs left running by a dead worker as interrupted; queue their targets again."""
        requeued = []
        with self._tx() as db:
            for run_id, phase in db.execute("SELECT id, phase FROM runs WHERE state = ?", (RUNNING,)).fetchall():
                db.execute("UPDATE runs SET state = ?, finished_at = ?, error = ? WHERE id = ?",
                           (INTERRUPTED, _now(), f"interrupted: the trainer stopped during phase "
                                                 f"{phase!r}; its work was queued again", run_id))
                old = self._get(db, run_id)
                cur = db.execute("INSERT INTO runs (state, trigger, targets, created_at, progress) VALUES "
                                 "(?, ?, ?, ?, '{}')", (QUEUED, f"retry of interrupted run {run_id}",
                                                        json.dumps(old.targets), _now()))
                requeued.append(self._get(db, cur.lastrowid))
        return requeued

    # ---- reading ---------------------------------------------------------
    def get(self, run_id: int) -> Run | None:
        with self._tx() as db:
            return self._get(db, run_id)

    def list(self, *, limit: int = 50, state: str | None = None) -> list[Run]:
        with self._tx() as db:
            sql, args = "SELECT id FROM runs", []
            if state:
                sql, args = sql + " WHERE state = ?", [state]
            ids = [r[0] for r in db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))]
            return [self._get(db, i) for i in ids]

    @staticmethod
    def _get(db: sqlite3.Connection, run_id: int) -> Run | None:
        row = db.execute("SELECT id, state, trigger, targets, created_at, started_at, finished_at, phase, "
                         "progress, result, error FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        return Run(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6], row[7],
                   json.loads(row[8] or "{}"), json.loads(row[9]) if row[9] else None, row[10])

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction on a fresh connection: committed on success, else rolled back."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()


def _targets() -> dict[str, list[int]]:
    return {k: [] for k in TARGET_KINDS}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
