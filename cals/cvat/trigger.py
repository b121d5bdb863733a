"""When a CVAT job is finished enough to learn from: `state:completed` (default) or `stage:acceptance`.

One rule for the webhook (did this update make the job reach it?) and for on-demand runs over
whole tasks or projects (which of their jobs have reached it?), so both learn from the same jobs.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cals.errors import CalsError

FIELDS = {"state": ("new", "in progress", "rejected", "completed"),
          "stage": ("annotation", "validation", "acceptance")}
DEFAULT = "state:completed"


@dataclass(frozen=True)
class JobTrigger:
    field: str
    value: str

    @classmethod
    def parse(cls, text: str) -> "JobTrigger":
        """`"state:completed"` or `"stage:acceptance"` (any CVAT state/stage value)."""
        field, _, value = (text or "").partition(":")
        if field not in FIELDS or value not in FIELDS[field]:
            choices = [f"{f}:{v}" for f, vs in FIELDS.items() for v in vs]
            raise CalsError(f"unknown job trigger {text!r}; choose one of {choices}")
        return cls(field, value)

    def __str__(self) -> str:
        return f"{self.field}:{self.value}"

    def matches(self, job: Any) -> bool:
        """Whether a job (a dict or a cvat-sdk model) is at the trigger now."""
        value = job.get(self.field) if isinstance(job, dict) else getattr(job, self.field, None)
        return str(getattr(value, "value", value)) == self.value

    def reached(self, job: dict, before_update: dict | None) -> bool:
        """An update made the job reach the trigger. Newer CVAT omits `before_update`: then the
        job's current value decides (event-key deduplication keeps repeats from adding work)."""
        if not self.matches(job):
            return False
        return not before_update or self.field in before_update


def update_key(job_id: int, trigger: JobTrigger | str, updated_date: Any) -> str | None:
    """One key per job update, the same from a webhook's payload (an ISO string) and from a job
    listing (cvat-sdk's datetime): a redelivery or a catch-up of a learned update repeats it, a later
    completion of the same job has a new `updated_date`. None when the date is missing or unreadable."""
    stamp = updated_date
    if isinstance(stamp, str):
        try:
            stamp = datetime.fromisoformat(stamp)
        except ValueError:
            return None
    if not isinstance(stamp, datetime):
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return f"job:{job_id}:{trigger}:{stamp.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
