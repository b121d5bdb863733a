"""Catch-up: the completed jobs whose webhook the trainer never got are learned from anyway.

CVAT 2.23 posts each webhook once, with a 10 s timeout, and leaves a failed delivery for a person to
redeliver (`cvat/apps/webhooks/signals.py`). So a trainer that was down, restarting or behind a
broken proxy when an annotator completed a job would never learn it. At start and then every
`CALS_CATCHUP_SECONDS`, the trainer lists the project's jobs at the trigger (one paged listing,
filtered by CVAT) and queues each job whose update it has no record of. The key is the webhook's
(`update_key`: job id, trigger, `updated_date`), so catch-up and webhooks never queue the same
update twice, and a run made from caught-up jobs says so in its trigger.

Listing jobs, not CVAT's webhook deliveries (`/api/webhooks/<id>/deliveries`), because the jobs
are what must be learned: a listing also finds a completion CVAT never tried to deliver (the
webhook deleted, disabled or pointing elsewhere at the time), needs no webhook id and no rights on
the webhook, and does not mistake a proxy's 200 for a delivery the trainer recorded.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, ContextManager

from cals.cvat.trigger import JobTrigger, update_key
from cals.errors import CalsError
from cals.training.queue import CATCH_UP, RunQueue

log = logging.getLogger(__name__)
PAGE_SIZE = 500  # jobs per listed page: CVAT's default is 10, and it sets no maximum


@dataclass
class CatchUpReport:
    """One catch-up: what the listing held and what it queued (what /health shows of the last one)."""

    at: str
    listed: int = 0  # jobs at the trigger in the project
    queued: list[int] = field(default_factory=list)  # jobs whose update was new
    seconds: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def catch_up(client: Any, project_id: int, trigger: JobTrigger, queue: RunQueue) -> CatchUpReport:
    """List the project's jobs at the trigger and queue those whose update the queue has not seen."""
    from cvat_sdk.api_client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    report = CatchUpReport(at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    start = time.perf_counter()
    try:
        listed = client.jobs.list(project_id=project_id, page_size=PAGE_SIZE, return_json=True,
                                  **{trigger.field: trigger.value})  # JSON text: parsed as plain dicts
    except ApiException as exc:
        raise CalsError(f"catch-up could not list the jobs of project {project_id} (HTTP {exc.status})") from None
    except (HTTPError, OSError) as exc:  # CVAT went away between the login and the listing
        raise CalsError(f"catch-up could not list the jobs of project {project_id}: CVAT stopped answering "
                        f"({exc})") from None
    jobs = json.loads(listed) if isinstance(listed, (str, bytes)) else listed
    keyed = {key: job for job in jobs if trigger.matches(job)
             and (key := update_key(job["id"], trigger, job.get("updated_date"))) is not None}
    known = queue.known_updates(list(keyed))
    for key, job in keyed.items():
        if key not in known and queue.record_job_event(key, job["id"], job.get("task_id"), project_id,
                                                       source=CATCH_UP) != "duplicate":
            report.queued.append(job["id"])
    report.listed, report.seconds = len(keyed), round(time.perf_counter() - start, 3)
    return report


class CatchUp:
    """When catch-up is due (at start, then every `interval` s) and how the last one went."""

    def __init__(self, connect: Callable[[], ContextManager[Any]], project_id: int, trigger: JobTrigger,
                 queue: RunQueue, *, interval: float) -> None:
        self.connect, self.project_id, self.trigger, self.queue = connect, project_id, trigger, queue
        self.interval = interval
        self.last: CatchUpReport | None = None
        self._next = 0.0  # monotonic time of the next catch-up; 0: at once

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def seconds_to_next(self) -> float:
        return max(0.0, self._next - time.monotonic())

    def run(self) -> CatchUpReport:
        """One catch-up now; a failure (CVAT down) is logged and reported, and retried next interval."""
        self._next = time.monotonic() + self.interval
        try:
            with self.connect() as client:
                self.last = catch_up(client, self.project_id, self.trigger, self.queue)
        except Exception as exc:  # noqa: BLE001 - CVAT down or refusing: the next interval tries again
            self.last = CatchUpReport(at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                      error=f"{type(exc).__name__}: {exc}" if not isinstance(exc, CalsError)
                                      else str(exc))
            log.warning("catch-up failed, retried in %.0f s: %s", self.interval, self.last.error)
            return self.last
        if self.last.queued:
            log.warning("catch-up queued %d completed job(s) not learned yet (no webhook, or a failed run): %s",
                        len(self.last.queued), self.last.queued)
        return self.last
