"""The loop report's document (GET /report.json, `cals report --json`): per round and per job, the
numbers of `numbers.py`, the round's state and times, and the gate's decision on its labels."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from cals.errors import CalsError
from cals.schema import Schema
from cals.training.queue import Run
from cals.training.report.cache import NumbersCache
from cals.training.report.numbers import frame_numbers
from cals.training.report.sources import LoopRecords

OPEN, WAITING, COMPLETE = "open", "waiting for the trainer", "complete"


def build_report(records: LoopRecords, schema: Schema, *, tolerance: float, generated_at: str,
                 cache: NumbersCache | None = None) -> dict[str, Any]:
    """Rounds oldest first; a round whose task CVAT no longer has is listed under `skipped`."""
    cache = cache or NumbersCache()
    rounds, skipped = [], []
    learned_by = _learned_by(records.runs)
    for record in records.rounds:
        if records.cvat is not None and record["task_id"] not in records.cvat:
            skipped.append({"number": record["number"], "task_id": record["task_id"],
                            "project_id": record["project_id"], "reason": "its task was deleted in CVAT"})
            continue
        rounds.append(_round(record, records, schema, tolerance, learned_by, cache))
    cache.save()
    return {"generated_at": generated_at, "schema": {"groups": list(schema.groups)},
            "tolerance": tolerance, "cvat_states": records.cvat is not None, "cvat_note": records.cvat_note,
            "rounds": rounds, "skipped": skipped, "unreadable": records.unreadable}


def _round(record: dict, records: LoopRecords, schema: Schema, tolerance: float,
           learned_by: dict[int, Run], cache: NumbersCache) -> dict[str, Any]:
    task = record["task_id"]
    finals, stamps = records.finals.get(task, {}), records.job_stamps.get(task, {})
    threshold = record.get("check_below")
    key = ["numbers-v1", task, records.record_stamp(task), threshold, tolerance, schema.names, schema.sigmas,
           sorted(record.get("random_frames") or [])]
    loaded: list = []

    def numbers(final: dict[str, list[dict]], part: list) -> dict[str, Any]:
        def compute():
            if not loaded:
                loaded.append(_pre(records, task))
            pre, sizes = loaded[0]
            return frame_numbers(pre, final, sizes, schema, tolerance=tolerance, threshold=threshold,
                                 at_random=record.get("random_frames") or [])
        return cache.get(key + part, compute)

    jobs = [{"job_id": job, **numbers(final, [job, stamps.get(job)]), "completed_at": records.completions.get(job),
             "run": learned_by[job].id if job in learned_by else None}
            for job, final in sorted(finals.items())]
    every = {name: people for final in finals.values() for name, people in final.items()}
    last = max(jobs, key=lambda j: (j["completed_at"] or "", j["job_id"]), default=None)
    return {"number": record["number"], "task_id": task, "project_id": record["project_id"],
            "version": record.get("version"), "strategy": record.get("strategy"),
            "preannotated": key[2] is not None, "check_below": threshold,
            "labelled_frames_before": _frames_learned_by(records, record.get("version")),
            **_state(record, records, finals), **numbers(every, ["round", sorted(stamps.items())]), "jobs": jobs,
            "times": _times(record, last, records, learned_by), "gate": _gate(last, learned_by, records)}


def _pre(records: LoopRecords, task: int) -> tuple[dict, dict]:
    """The task's pre-annotations; an unreadable record is named on the page and counts as none."""
    try:
        return records.pre(task)
    except CalsError as exc:
        records.unreadable.append(str(exc))
        return {}, {}


def _state(record: dict, records: LoopRecords, finals: dict) -> dict[str, Any]:
    total = len(record.get("jobs") or [])
    cvat_jobs = (records.cvat or {}).get(record["task_id"])
    completed = sum(cvat_jobs.values()) if cvat_jobs is not None else None
    if cvat_jobs is not None:
        total = len(cvat_jobs)
    learned = len(finals)
    if completed is not None and completed < total:
        state = OPEN
    else:
        state = COMPLETE if learned >= total else WAITING if completed is not None else OPEN
    return {"state": state, "jobs_total": total, "jobs_completed": completed, "jobs_learned": learned}


def _learned_by(runs: list[Run]) -> dict[int, Run]:
    """Job id -> the latest succeeded run that learned it (its labels are the ones kept)."""
    out = {}
    for run in runs:
        for job in (run.result or {}).get("jobs", []):
            out[job] = run
    return out


def _frames_learned_by(records: LoopRecords, version: str | None) -> int | None:
    """Labelled frames the version could have learned from: those first learned by the run that trained
    it or an earlier one; for a version made outside the trainer (the initial model, `cals train`),
    those learned by runs finished before it was registered. None for a version the registry lacks."""
    run = next((r for r in records.runs if ((r.result or {}).get("model") or {}).get("version") == version), None)
    if run is not None:
        return sum(1 for first in records.first_run.values() if first <= run.id)
    meta = records.versions.get(version or "")
    if meta is None:
        return None
    made = datetime.fromisoformat(meta["created_at"])
    before = {r.id for r in records.runs if r.finished_at and datetime.fromisoformat(r.finished_at) <= made}
    return sum(1 for first in records.first_run.values() if first in before)


def _times(record: dict, last: dict | None, records: LoopRecords, learned_by: dict[int, Run]) -> dict[str, Any]:
    """Opened -> last job completed, and completed -> the first promotion of a model that had its labels."""
    opened, done = record.get("opened_at") or None, last["completed_at"] if last else None
    promoted = None
    if last is not None and last["job_id"] in learned_by:
        first = learned_by[last["job_id"]].id
        promoted = next((r.finished_at for r in records.runs if r.id >= first
                         and ((r.result or {}).get("model") or {}).get("promoted")), None)
    return {"opened_at": opened, "last_completed_at": done, "promoted_at": promoted,
            "open_to_done_s": _seconds(opened, done), "done_to_promoted_s": _seconds(done, promoted)}


def _gate(last: dict | None, learned_by: dict[int, Run], records: LoopRecords) -> dict[str, Any] | None:
    """The decision on the candidate trained with the round's last completed job."""
    if last is None or last["job_id"] not in learned_by:
        return None
    run = learned_by[last["job_id"]]
    model = (run.result or {}).get("model") or {}
    promotion = (records.versions.get(model.get("version") or "") or {}).get("promotion") or {}
    return {"run": run.id, "version": model.get("version"), "promoted": model.get("promoted"),
            "reason": model.get("reason"), "metric": promotion.get("metric"),
            "candidate": model.get("candidate"), "current": model.get("current")}


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 1)
