"""Rounds killed half-way (SIGKILL, power loss): found and removed by the next `open_round`, never a person's work.

`round-N/opening.json` is written before task "round N" is created and removed once `round.json` is
written, so a "round N" task with that marker and no record is ours and unfinished. It is deleted when
no person touched it: every job still "new" in stage "annotation" with nobody assigned, and its
annotations nothing but what CALS uploaded (or none). Otherwise the call stops with a CalsError
naming the task. A "round N" task without record or marker is left alone.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from cals.cvat.round_upload import shown
from cals.durable import write_json_atomic
from cals.errors import CalsError

log = logging.getLogger(__name__)
MARKER, MARKER_COCO = "opening.json", "opening-coco.json"


def clear_orphans(client, rounds: dict[int, object], folder: Path) -> dict[int, object]:
    """Delete the untouched tasks of rounds killed half-way; returns the rounds that remain.

    Called under the project lock, so no other caller is between its marker and its record.
    """
    rounds = dict(rounds)
    for marker in sorted(folder.glob(f"round-*/{MARKER}")):
        data = json.loads(marker.read_text())
        task = rounds.get(data["number"])
        if task is not None and (marker.parent / "round.json").is_file():
            remove_marker(marker.parent)  # killed after the record: the round is complete
            continue
        if task is not None and data.get("task_id") not in (None, task.id):
            task = None  # "round N" is another task; ours was already deleted
        if task is not None:
            _delete_orphan(client, task, marker.parent, imported=bool(data.get("imported")))
            del rounds[data["number"]]
        remove_marker(marker.parent)
    return rounds


def _delete_orphan(client, task, folder: Path, *, imported: bool) -> None:
    """Delete a half-opened round's task, or stop if a person may have worked in it."""
    coco_file = folder / MARKER_COCO
    coco = json.loads(coco_file.read_text()) if coco_file.is_file() else None
    touched = _touched(client, task, coco, imported=imported)
    if touched:
        raise CalsError(f"task {task.id} {task.name!r} is a round that was interrupted while being opened "
                        f"(no {folder / 'round.json'}), but {touched}. Finish or keep it in CVAT and "
                        f"delete {folder / MARKER} to count it as a round, or delete the task in CVAT; "
                        "then open the round again")
    client.tasks.remove_by_ids([task.id])
    log.warning("deleted task %d %r: a round interrupted while being opened, untouched by anyone",
                task.id, task.name)


def _touched(client, task, coco: dict | None, *, imported: bool) -> str | None:
    """Why `task` may hold a person's work, or None when it holds only what CALS put there.

    `coco`: the pre-annotations CALS was importing; `imported`: whether that import had finished
    (then an empty task means a person removed them).
    """
    if getattr(task, "assignee", None):
        return "the task has an assignee"
    jobs = client.jobs.list(task_id=task.id)
    for job in jobs:
        if (job.state, job.stage) != ("new", "annotation") or job.assignee:
            return f"job {job.id} is {job.stage}/{job.state}" + (" and assigned" if job.assignee else "")
    if not jobs:
        return None  # killed before its frames were uploaded: nothing to annotate (CVAT 400s the read)
    ann = task.get_annotations()
    if ann.tags or ann.tracks:
        return "it has tags or tracks CALS never imports"
    if not ann.shapes:
        return "a person removed its pre-annotations" if imported and coco and coco["annotations"] else None
    if not _same_points(ann.shapes, coco, _frame_names(task)):
        return "its annotations differ from the pre-annotations CALS imported"
    return None


def _frame_names(task) -> list[str]:
    return [Path(f.name).name for f in task.get_frames_info()]


def _same_points(shapes, imported: dict | None, frames: list[str]) -> bool:
    """Do the shown skeleton points per frame equal the uploaded ones (within half a pixel)?"""
    if imported is None:
        return False
    want: dict[str, list[tuple[float, float]]] = {}
    images = {im["id"]: im for im in imported["images"]}
    for ann in imported["annotations"]:
        image = images[ann["image_id"]]
        kps = ann["keypoints"]
        want.setdefault(image["file_name"], []).extend(
            (kps[3 * i], kps[3 * i + 1]) for i in np.flatnonzero(shown(ann, image)))
    got: dict[str, list[tuple[float, float]]] = {}
    for shape in shapes:
        if shape.type.value != "skeleton":
            return False
        got.setdefault(frames[shape.frame], []).extend(
            (e.points[0], e.points[1]) for e in shape.elements if not e.outside)
    return set(got) <= set(want) and all(_match(got.get(f, []), pts) for f, pts in want.items())


def _match(got: list[tuple[float, float]], want: list[tuple[float, float]]) -> bool:
    left = sorted(got)
    for x, y in sorted(want):
        hit = next((p for p in left if abs(p[0] - x) <= 0.5 and abs(p[1] - y) <= 0.5), None)
        if hit is None:
            return False
        left.remove(hit)
    return not left


def write_marker(folder: Path, data: dict) -> None:
    write_json(folder / MARKER, data)


def remove_marker(folder: Path) -> None:
    (folder / MARKER_COCO).unlink(missing_ok=True)
    (folder / MARKER).unlink(missing_ok=True)


def write_json(path: Path, data) -> None:
    """Atomic and synced: the markers must survive the power loss they are there for."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, data)
