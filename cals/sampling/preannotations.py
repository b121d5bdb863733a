"""What CALS pre-annotated into a CVAT task, kept so the trainer can measure people's corrections.

The sampler records, when it opens a round, one COCO keypoints document per CVAT task: images
carry the CVAT frame name as `file_name` (and the frame index as `frame`), annotations the
skeletons it imported. The trainer reads it back when it exports that task's jobs.
Files are written atomically and never changed afterwards: the record is of what was proposed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cals.durable import write_json_atomic
from cals.errors import CalsError


def record_path(root: str | os.PathLike, task_id: int) -> Path:
    return Path(root) / f"task-{int(task_id)}.json"


def record(root: str | os.PathLike, task_id: int, coco: dict[str, Any]) -> Path:
    """Store the pre-annotations of a task; refuses to replace an existing record."""
    path = record_path(root, task_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise CalsError(f"pre-annotations of task {task_id} are already recorded in {path}")
    return write_json_atomic(path, coco, indent=None)


def load(root: str | os.PathLike, task_id: int) -> dict[str, Any] | None:
    """The recorded document, or None when CALS did not pre-annotate that task."""
    path = record_path(root, task_id)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CalsError(f"pre-annotation record {path} is unreadable: {exc}") from exc


def by_frame_name(coco: dict[str, Any]) -> dict[str, list[dict]]:
    """Annotations keyed by image file name — the key CVAT exports keep across tasks and jobs."""
    names = {im["id"]: im["file_name"] for im in coco.get("images", [])}
    out: dict[str, list[dict]] = {name: [] for name in names.values()}
    for ann in coco.get("annotations", []):
        out.setdefault(names.get(ann["image_id"], str(ann["image_id"])), []).append(ann)
    return out
