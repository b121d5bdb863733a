"""The loop report: what CALS did on the team's own frames, round by round, from the loop's records.

`loop_report` gathers (sources.py), asks CVAT for the rounds' job states when given a way to reach
it, and builds the document (build.py, numbers.py); `render_page` (page.py) makes the HTML the
trainer serves at GET /report and `cals report` writes. trainer/README.md, "Loop report", defines
every number.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ContextManager

from cals.registry import Registry
from cals.schema import Schema
from cals.training.labelled_set import LabelledSet
from cals.training.queue import RunQueue
from cals.training.report.build import build_report
from cals.training.report.cache import NumbersCache
from cals.training.report.page import render_page
from cals.training.report.sources import cvat_states, gather

__all__ = ["NumbersCache", "loop_report", "render_page"]
log = logging.getLogger(__name__)


def loop_report(data_root: Path, registry: Registry, queue: RunQueue, schema: Schema, *, tolerance: float,
                cvat: Callable[[], ContextManager[Any]] | None = None, trigger=None,
                cache: NumbersCache | None = None) -> dict[str, Any]:
    """The report document; `cvat` opens a cvat-sdk client (the rounds' job states and deleted tasks);
    `cache` keeps computed numbers between calls (default: `<data_root>/report/numbers.json`)."""
    records = gather(Path(data_root), registry, queue, LabelledSet(Path(data_root) / "labelled", schema))
    if cvat is not None and records.rounds:
        try:
            with cvat() as client:
                records.cvat = cvat_states(records, client, trigger)
        except Exception as exc:  # noqa: BLE001 - CVAT down or failing: the page shows the records alone
            log.warning("loop report without CVAT's job states: %s", exc)
            records.cvat_note = f"CVAT did not answer ({type(exc).__name__}: {exc})"
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    cache = cache or NumbersCache(Path(data_root) / "report" / "numbers.json")
    return build_report(records, schema, tolerance=tolerance, generated_at=now, cache=cache)
