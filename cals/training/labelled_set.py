"""The labelled set on disk: what people finished in CVAT, merged frame by frame.

Layout under the root (both splits are CALS datasets, see `cals.data.coco`)::

    train/annotations.json, train/images/
    val/annotations.json,   val/images/

Each image entry carries its CVAT origin (`cvat`: task, job, frame name) and a `provenance` list
(one item per export that touched it). A frame is keyed by task id + frame name (CVAT keeps frame
names unique within a task); re-exporting it replaces its annotations (the latest labels win) and
never moves it between splits, so the validation split is fixed and only grows. Each split's file
is replaced atomically, so a crash leaves the old or the new state, never a mix; images a killed
merge copied before the switch are removed by `clean` (the trainer calls it at start).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from cals.cvat.export import ExportedJob
from cals.data.coco import ANNOTATIONS, IMAGES, annotations_by_image, read_json, write_coco
from cals.schema import Schema
from cals.settings import default

log = logging.getLogger(__name__)
SPLITS = ("train", "val")
DEFAULT_VAL_FRACTION: float = default("CALS_VAL_FRACTION")


@dataclass(frozen=True)
class MergeReport:
    new_frames: int
    updated_frames: int
    new_val_frames: int
    sizes: dict[str, dict[str, int]]  # split -> {"images", "annotations"}

    def as_dict(self) -> dict[str, Any]:
        return {"new_frames": self.new_frames, "updated_frames": self.updated_frames,
                "new_val_frames": self.new_val_frames, "sizes": self.sizes}


class LabelledSet:
    """Train and validation splits of CVAT-labelled frames; see the module docstring."""

    def __init__(self, root: str | os.PathLike, schema: Schema, *,
                 val_fraction: float = DEFAULT_VAL_FRACTION) -> None:
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        self.root = Path(root)
        self.schema = schema
        self.val_fraction = val_fraction

    def split_root(self, split: str) -> Path:
        return self.root / split

    def load(self, split: str) -> dict[str, Any]:
        path = self.split_root(split) / ANNOTATIONS
        if not path.is_file():
            return {"images": [], "annotations": [], "categories": [self.schema.coco_category()]}
        return read_json(path)

    def sizes(self) -> dict[str, dict[str, int]]:
        return {s: {"images": len(c["images"]), "annotations": len(c["annotations"])}
                for s, c in ((s, self.load(s)) for s in SPLITS)}

    def frame_names(self) -> set[str]:
        """The CVAT frame names of every labelled frame, both splits: the pool frames people labelled
        (a round copies pool frames under their own names), which the pool set leaves out."""
        return {PurePosixPath(im["cvat"]["frame"]).name for s in SPLITS for im in self.load(s)["images"]
                if "cvat" in im}

    def clean(self) -> list[Path]:
        """Remove what a merge killed mid-way left: images no split's annotations.json refers to
        (copied before the JSON switched) and half-written annotations.json.tmp files.

        Call only while no merge runs (the trainer does at start, before its worker runs).
        """
        leftovers = []
        for split in SPLITS:
            root = self.split_root(split)
            kept = {im["file_name"] for im in self.load(split)["images"]}
            leftovers += [p for p in (root / IMAGES).glob("*") if p.is_file() and p.name not in kept]
            leftovers += list(root.glob("*.tmp"))
        for path in leftovers:
            path.unlink()
        if leftovers:
            log.warning("labelled set %s: removed %d leftovers of an interrupted merge", self.root, len(leftovers))
        return leftovers

    def merge(self, exports: list[ExportedJob], *, run_id: str | int) -> MergeReport:
        """Add or replace the frames of `exports`; images are copied before the JSON switches."""
        docs = {s: self.load(s) for s in SPLITS}
        where = {im["cvat"]["key"]: (s, im) for s, d in docs.items() for im in d["images"] if "cvat" in im}
        ids = _Ids(docs)
        new = updated = new_val = 0
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for export in exports:
            anns_by_image = annotations_by_image(export.coco)
            for im in export.coco["images"]:
                key = f"task-{export.task_id}/{im['file_name']}"
                if key in where:
                    split, entry = where[key]
                    updated += 1
                else:
                    split = self._split_for_new(docs)
                    entry = self._new_entry(docs[split], ids, export, im, key)
                    where[key] = (split, entry)
                    new += 1
                    new_val += split == "val"
                self._replace(docs[split], ids, entry, export, im, anns_by_image.get(im["id"], []))
                entry["provenance"].append({"run": run_id, "job_id": export.job_id, "at": stamp,
                                            "annotations": len(anns_by_image.get(im["id"], []))})
                target = self.split_root(split) / IMAGES / entry["file_name"]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(export.images[im["file_name"]], target)
        for split, doc in docs.items():
            write_coco(doc, self.split_root(split) / ANNOTATIONS)
        report = MergeReport(new, updated, new_val, self.sizes())
        log.info("labelled set %s: %d new frames (%d to val), %d updated", self.root, new, new_val, updated)
        return report

    def _split_for_new(self, docs: dict[str, dict]) -> str:
        return split_for_new(len(docs["val"]["images"]), sum(len(d["images"]) for d in docs.values()),
                             self.val_fraction)

    @staticmethod
    def _new_entry(doc: dict, ids: "_Ids", export: ExportedJob, im: dict, key: str) -> dict:
        stored = re.sub(r"[^A-Za-z0-9._-]", "_", f"t{export.task_id}-{im['file_name']}")
        entry = {"id": ids.image(), "file_name": stored, "provenance": [],
                 "cvat": {"key": key, "task_id": export.task_id, "frame": im["file_name"]}}
        doc["images"].append(entry)
        return entry

    @staticmethod
    def _replace(doc: dict, ids: "_Ids", entry: dict, export: ExportedJob, im: dict,
                 anns: list[dict]) -> None:
        entry.update(width=im.get("width"), height=im.get("height"))
        entry["cvat"].update(job_id=export.job_id, project_id=export.project_id)
        doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] != entry["id"]]
        for ann in anns:
            doc["annotations"].append({**ann, "id": ids.annotation(), "image_id": entry["id"],
                                       "category_id": 1, "iscrowd": ann.get("iscrowd", 0)})


def split_for_new(val_frames: int, frames: int, val_fraction: float) -> str:
    """The split of the next new frame, given how many frames (`val_frames` of them in val) came before.

    Deterministic: val when val, with it, stays within its share of all frames (so the first frames
    train: a lone first frame must not leave nothing to train on). `cals simulate` splits the frames
    its annotator labels with this rule too, so its promotion gate is the trainer's.
    """
    return "val" if val_frames + 1 <= val_fraction * (frames + 1) else "train"


class _Ids:
    """Next free image and annotation ids across both splits."""

    def __init__(self, docs: dict[str, dict]) -> None:
        self._image = max((im["id"] for d in docs.values() for im in d["images"]), default=0)
        self._ann = max((a["id"] for d in docs.values() for a in d["annotations"]), default=0)

    def image(self) -> int:
        self._image += 1
        return self._image

    def annotation(self) -> int:
        self._ann += 1
        return self._ann

