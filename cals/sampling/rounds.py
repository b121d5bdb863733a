"""Open the next annotation round in CVAT: the top-ranked unused pool frames as task "round N".

Frames go in rank order, split by `job_file_mapping` into jobs of `job_size` (job 1 = highest
scores); CVAT fixes frame order and jobs from the mapping alone (it refuses it together with
`sorting_method` or `segment_size`). Pre-annotations go in as skeletons flagged with the points
to check (cvat/round_upload.py) and are recorded for the trainer. What makes it safe to call
again and again:
- frames already in any "round N" task of the project are excluded (read from CVAT each time);
- the newest round opened with the same model version is returned instead of a new one;
- callers in threads and processes serialise on a lock file per project;
- any failure after the task exists deletes the task: no half-created round is left;
- a round killed half-way (SIGKILL, power loss) is cleaned up by the next call, never a person's
  work (cvat/round_orphans.py).
"""
from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
from cvat_sdk.api_client import models

from cals.durable import file_lock
from cals.sampling import preannotations
from cals.cvat.pool import project_tasks
from cals.cvat.round_upload import upload_preannotations
from cals.cvat.round_orphans import MARKER_COCO, clear_orphans, remove_marker, write_json, write_marker
from cals.errors import CalsError
from cals.cvat.point_checks import check_below as default_check_below
from cals.data.pool import Pool, PoolItem
from cals.sampling.ranking import Ranked, rank
from cals.sampling.round_coco import round_coco
from cals.sampling.round_report import contact_sheet, write_ranking
from cals.sampling.scoring import Scorer
from cals.sampling.strategies import PoolStrategy, Strategy
from cals.sampling.strategies.random_share import picked_at_random

log = logging.getLogger(__name__)
ROUND_NAME = re.compile(r"^round (\d+)$")


@dataclass
class RoundResult:
    number: int
    task_id: int
    created: bool  # False: this version's round already existed and is returned as it is
    version: str
    strategy: str
    frames: list[str] = field(default_factory=list)  # frame names in CVAT frame order
    jobs: list[list[str]] = field(default_factory=list)
    ranking: list[dict] = field(default_factory=list)  # the chosen frames: rank, name, score, scores
    folder: str = ""  # where the round's record and reports are
    opened_at: str = ""  # UTC, ISO 8601: when the task was created (the loop report's round time)
    check_below: float | None = None  # the points-to-check threshold the pre-annotations were flagged with
    random_frames: list[str] = field(default_factory=list)  # the picks that followed Random's order

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class RoundSpec:
    project_id: int
    size: int = 50  # frames per round
    job_size: int = 10  # frames per CVAT job

    def check(self) -> None:
        for name in ("project_id", "size", "job_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CalsError(f"{name} must be a positive integer, got {value!r}")


def open_round(client, spec: RoundSpec, pool: Pool, scorer: Scorer, strategy: Strategy | PoolStrategy,
               *, data_dir: str | Path, labelled: np.ndarray | None = None, progress: bool = True,
               check_below: float | None = None) -> RoundResult:
    """Score the pool, pick the top unused frames and create "round N"; see the module docstring.

    `labelled`: (M, D) backbone features of labelled frames, the core-set's initial centres.
    `check_below`: pre-annotated points scoring below it are flagged to check; default $CALS_CHECK_BELOW.
    """
    spec.check()
    if check_below is not None and not 0 <= check_below <= 1:
        raise CalsError(f"check_below must be a score between 0 and 1, got {check_below!r}")
    folder = Path(data_dir) / "sampler" / "rounds" / f"project-{spec.project_id}"
    with _project_lock(folder):
        rounds = clear_orphans(client, round_tasks(client, spec.project_id), folder)
        existing = _same_version_round(rounds, folder, scorer.predictor.version_id)
        if existing is not None:
            log.info("round %d (task %d) was already opened with %s; not opening another",
                     existing.number, existing.task_id, existing.version)
            return existing
        used = used_frames(rounds.values())
        table = scorer.score(pool, [strategy], exclude=used, progress=progress)
        ranking = rank(table, strategy, k=spec.size, exclude=used, labelled=labelled)
        chosen = ranking[:spec.size]
        if not chosen:
            raise CalsError(f"every pool frame of project {spec.project_id} is already in a round")
        number = max(rounds, default=0) + 1
        at_random = picked_at_random(strategy, [r.name for r in chosen], k=spec.size, n=len(ranking))
        return _create(client, spec, number, pool, scorer, strategy, chosen, folder / f"round-{number}",
                       data_dir=Path(data_dir), check_below=check_below, at_random=at_random)


def round_tasks(client, project_id: int) -> dict[int, object]:
    """Round number → task, for the project's tasks named "round N"."""
    out = {}
    for task in project_tasks(client, project_id):
        m = ROUND_NAME.match(task.name or "")
        if m:
            out[int(m.group(1))] = task
    return out


def used_frames(tasks) -> set[str]:
    """File names of every frame already in a round: never put in a second one."""
    return {Path(f.name).name for task in tasks for f in task.get_frames_info()}


def _same_version_round(rounds: dict, folder: Path, version: str) -> RoundResult | None:
    if not rounds:
        return None
    number = max(rounds)
    record = folder / f"round-{number}" / "round.json"
    if not record.is_file():
        return None
    data = json.loads(record.read_text())
    if data.get("version") != version or data.get("task_id") != rounds[number].id:
        return None
    return RoundResult(**{**data, "created": False})


def _create(client, spec: RoundSpec, number: int, pool: Pool, scorer: Scorer, strategy, chosen: list[Ranked],
            folder: Path, *, data_dir: Path, check_below: float | None, at_random: list[str]) -> RoundResult:
    names = [r.name for r in chosen]
    threshold = default_check_below() if check_below is None else float(check_below)
    jobs = [names[i:i + spec.job_size] for i in range(0, len(names), spec.job_size)]
    items = _items_by_name(pool, set(names))
    with tempfile.TemporaryDirectory(prefix="cals-round-") as tmp:
        frames = _write_frames(pool, [items[n] for n in names], Path(tmp), scorer)
        marker = {"number": number, "frames": names, "task_id": None}
        write_marker(folder, marker)
        task = client.tasks.create(models.TaskWriteRequest(name=f"round {number}", project_id=spec.project_id))
        opened_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        log.info("created task %d %r; uploading %d frames in %d jobs", task.id, task.name, len(names), len(jobs))
        try:
            write_marker(folder, marker := {**marker, "task_id": task.id})
            task.upload_data([Path(tmp) / n for n in names], params={"job_file_mapping": jobs})
            _check_order(task, names)
            coco = round_coco(frames, scorer.predictor.schema)
            write_json(folder / MARKER_COCO, coco)
            upload_preannotations(task, coco, scorer.predictor.schema, threshold)
            write_marker(folder, {**marker, "imported": True})
            result = RoundResult(number, task.id, True, scorer.predictor.version_id, strategy.cache_id,
                                 names, jobs, [asdict(r) for r in chosen], str(folder), opened_at,
                                 threshold, at_random)
            preannotations.record(data_dir / "preannotations", task.id, coco)
            _write_record(folder, result)  # last: the record is what makes the round complete
        except BaseException:
            _delete_task(client, task.id, folder)
            raise
        remove_marker(folder)
        _reports(folder, result, frames, Path(tmp), scorer.predictor.schema)
    log.info("opened round %d as task %d with %d frames", number, task.id, len(names))
    return result


def _items_by_name(pool: Pool, names: set[str]) -> dict[str, PoolItem]:
    return {item.name: item for item in pool.items() if item.name in names}


def _write_frames(pool: Pool, items: list[PoolItem], folder: Path, scorer: Scorer) -> list[dict]:
    """Save the chosen frames under their pool names; return what the pre-annotations need."""
    frames = []
    for item in items:
        data = pool.image_bytes(item)
        (folder / item.name).write_bytes(data)
        frames.append(scorer.frame_record(item, data))
    return frames


def _reports(folder: Path, result: RoundResult, frames: list[dict], tmp: Path, schema) -> None:
    """ranking.json/.csv and contact.png; a report failure is logged, the round stands."""
    import cv2

    try:
        write_ranking(folder, result.ranking)
        sheet = [{**f, **r, "image": cv2.imread(str(tmp / f["name"]))} for f, r in zip(frames, result.ranking)]
        contact_sheet(folder / "contact.png", sheet, schema)
    except Exception:  # noqa: BLE001
        log.exception("round %d is open, but its report could not be written to %s", result.number, folder)


def _check_order(task, names: list[str]) -> None:
    got = [Path(f.name).name for f in task.get_frames_info()]
    if got != names:
        raise CalsError(f"CVAT put task {task.id}'s frames in another order than the ranking "
                        f"(first: {got[:3]} vs {names[:3]})")


def _write_record(folder: Path, result: RoundResult) -> None:
    write_json(folder / "round.json", {k: v for k, v in result.to_json().items() if k != "created"})


def _delete_task(client, task_id: int, folder: Path) -> None:
    """Roll back a round that failed half-way; if even that fails, say which task to delete."""
    try:
        client.tasks.remove_by_ids([task_id])
        log.warning("deleted half-created round task %d", task_id)
    except Exception as exc:  # noqa: BLE001 - the original error is what the caller must see
        log.error("could not delete half-created round task %d (%s); delete it in CVAT", task_id, exc)
        (folder / "round.json").unlink(missing_ok=True)
        return  # the marker stays: the next call finds the task and deletes it
    (folder / "round.json").unlink(missing_ok=True)
    remove_marker(folder)


@contextlib.contextmanager
def _project_lock(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / ".lock"):
        yield
