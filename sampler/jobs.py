"""One background worker for round openings: requests answer 202 at once, work runs in order.

A job's state is queued → running → done | failed, kept in memory for GET /jobs/<id>; errors
are logged with their traceback and reported as one line, never as a traceback in a response.
"""
from __future__ import annotations

import itertools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Callable

from cals.errors import CalsError

log = logging.getLogger(__name__)
KEEP = 200  # finished jobs remembered


class Jobs:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sampler-round")
        self._jobs: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def submit(self, kind: str, fn: Callable[[], Any], **info: Any) -> dict[str, Any]:
        with self._lock:
            job_id = str(next(self._ids))
            job = {"id": job_id, "kind": kind, "state": "queued", "submitted": _now(), **info}
            self._jobs[job_id] = job
            self._forget_old()
        self._pool.submit(self._run, job, fn)
        return dict(job)

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else dict(job)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(j) for j in self._jobs.values()]

    def _run(self, job: dict[str, Any], fn: Callable[[], Any]) -> None:
        job.update(state="running", started=_now())
        try:
            result = fn()
            job.update(state="done", result=result.to_json() if hasattr(result, "to_json") else result)
        except CalsError as exc:
            log.error("%s job %s failed: %s", job["kind"], job["id"], exc)
            job.update(state="failed", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - logged in full, reported in one line
            log.exception("%s job %s failed", job["kind"], job["id"])
            job.update(state="failed", error=f"internal error: {type(exc).__name__}: {exc}")
        job["finished"] = _now()

    def _forget_old(self) -> None:
        done = [k for k, j in self._jobs.items() if j["state"] in ("done", "failed")]
        for k in done[:-KEEP]:
            del self._jobs[k]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
