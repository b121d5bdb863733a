"""The unlabelled pool as it lives in CVAT: one task (default name "pool") in the project.

People upload every unlabelled frame once into that task (optionally with body keypoints they
already have, as skeletons). The sampler never changes it: it reads frame names and existing
skeletons, downloads the pixels of the frames it scores, and copies chosen frames into new
round tasks. Frames already in a round task are excluded by name, so this survives restarts.
"""
from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import Iterator

import numpy as np

from cals.cvat.project_setup import skeleton_sublabels
from cals.errors import CalsError
from cals.data.pool import PoolItem, decode_image
from cals.schema import Schema

log = logging.getLogger(__name__)
BOX_MARGIN = 0.1  # a box from labelled points grows by this fraction of its size on each side


class CvatPool:
    """Frames of the pool task of a CVAT project; boxes from existing skeletons, else the detector."""

    def __init__(self, client, project_id: int, schema: Schema, *, task_name: str = "pool") -> None:
        self.client = client
        self.schema = schema
        self.task = find_task(client, project_id, task_name)
        self.name = f"cvat:{client.api_map.host}:task{self.task.id}"
        self.frames = [f.name for f in self.task.get_frames_info()]
        names = [PurePosixPath(n).name for n in self.frames]
        if len(set(names)) != len(names):
            raise CalsError(f"pool task {self.task.id} has frames with the same file name; rounds need unique names")
        self._labelled = existing_skeletons(self.task, schema)

    def __len__(self) -> int:
        return len(self.frames)

    def items(self) -> Iterator[PoolItem]:
        for index, frame in enumerate(self.frames):
            labelled = self._labelled.get(index)
            boxes = None if labelled is None else np.stack([box_of(kp) for kp in labelled])
            yield PoolItem(key=f"{self.name}:{frame}", name=PurePosixPath(frame).name, boxes=boxes,
                           labelled=labelled, ref=index)

    def load(self, items: list[PoolItem]) -> list[np.ndarray]:
        return [decode_image(self.image_bytes(item), f"{item.name!r} of task {self.task.id}") for item in items]

    def image_bytes(self, item: PoolItem) -> bytes:
        return self.task.get_frame(int(item.ref), quality="original").read()


def project_tasks(client, project_id: int) -> list:
    """The project's tasks (CVAT filters; the check below keeps a server that ignores the filter right)."""
    return [t for t in client.tasks.list(project_id=project_id) if t.project_id == project_id]


def find_task(client, project_id: int, name: str):
    """The task called `name` in the project; a clear error when there is none or several."""
    tasks = project_tasks(client, project_id)
    found = [t for t in tasks if t.name == name]
    if len(found) != 1:
        have = sorted(t.name for t in tasks)
        raise CalsError(f"project {project_id} needs exactly one task named {name!r} holding the "
                        f"unlabelled pool; it has {len(found)} (tasks: {have})")
    return found[0]


def existing_skeletons(task, schema: Schema) -> dict[int, np.ndarray]:
    """Frame index → (N, K, 3) keypoints of the skeletons people already put in the pool task."""
    point_index = skeleton_point_index(task.get_labels(), schema)
    out: dict[int, list[np.ndarray]] = {}
    for shape in task.get_annotations().shapes:
        if str(shape.type.value if hasattr(shape.type, "value") else shape.type) != "skeleton":
            continue
        kp = np.zeros((schema.num_keypoints, 3), np.float32)
        for el in shape.elements:
            i = point_index.get(el.label_id)
            if i is not None and not el.outside:
                kp[i] = (el.points[0], el.points[1], 1 if el.occluded else 2)
        if (kp[:, 2] > 0).sum() >= 2:
            out.setdefault(shape.frame, []).append(kp)
    return {f: np.stack(v) for f, v in out.items()}


def box_of(kp: np.ndarray) -> np.ndarray:
    """x1, y1, x2, y2 around the labelled points, grown by BOX_MARGIN on each side."""
    pts = kp[kp[:, 2] > 0, :2]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = (hi - lo) * BOX_MARGIN + 4
    return np.concatenate([lo - pad, hi + pad]).astype(np.float32)


def skeleton_point_index(labels, schema: Schema) -> dict[int, int]:
    """CVAT sublabel id → schema point index, for the skeleton label named like the schema's."""
    out: dict[int, int] = {}
    skeletons = [lab for lab in labels if lab.name == schema.label and str(lab.type) == "skeleton"]
    for lab in skeletons:
        subs = skeleton_sublabels(labels, lab)
        out.update({sub.id: schema.index(sub.name) for sub in subs if sub.name in schema.names})
    return out
