"""When a CVAT job is finished enough to learn from: `state:completed` (default) or `stage:acceptance`.

One rule for the webhook (did this update make the job reach it?) and for on-demand runs over
whole tasks or projects (which of their jobs have reached it?), so both learn from the same jobs.
"""
from __future__ import annotations

from dataclasses import dataclass
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
