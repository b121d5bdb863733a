"""Export one CVAT job as "COCO Keypoints 1.0" with images, and read it back as schema-ordered COCO.

The trainer's runs and any other caller that learns from CVAT go through `export_job`: cvat-sdk
does the export, `cals.cvat.safe_zip` the untrusted extraction, and the keypoints are re-ordered by
point name so a CVAT label whose points are listed in another order still lands right.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cals.data.coco import DatasetError, read_json, validate_coco
from cals.errors import CalsError
from cals.cvat.safe_zip import extract
from cals.schema import Schema

log = logging.getLogger(__name__)

COCO_KEYPOINTS = "COCO Keypoints 1.0"
ANNOTATION_FILE = "annotations/person_keypoints_default.json"


class ExportError(CalsError):
    """A job could not be exported from CVAT, or its export is unusable."""


class JobGone(ExportError):
    """CVAT answers 404 for the job: it (its task) was deleted. A run skips it, see training_run."""


@dataclass(frozen=True)
class ExportedJob:
    """A job's final labels: COCO in schema order; `images` maps a frame name to its file."""

    job_id: int
    task_id: int
    project_id: int | None
    coco: dict[str, Any]
    images: dict[str, Path]


def export_job(client, job_id: int, workdir: str | os.PathLike, schema: Schema) -> ExportedJob:
    """Export `job_id` through cvat-sdk into `workdir/job-<id>/` and read it back."""
    from cvat_sdk.api_client.exceptions import ApiException
    from cvat_sdk.core.exceptions import BackgroundRequestException
    from urllib3.exceptions import HTTPError

    folder = Path(workdir) / f"job-{int(job_id)}"
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "export.zip"
    try:
        job = client.jobs.retrieve(int(job_id))
        job.export_dataset(COCO_KEYPOINTS, archive, include_images=True)
    except ApiException as exc:
        kind = JobGone if exc.status == 404 else ExportError
        raise kind(f"export of job {job_id} failed: CVAT answered HTTP {exc.status} {exc.reason}") from None
    except (BackgroundRequestException, OSError) as exc:
        raise ExportError(f"export of job {job_id} failed: {exc}") from None
    except HTTPError as exc:  # the connection dropped: CVAT restarting, a proxy going away
        raise ExportError(f"export of job {job_id} failed: CVAT stopped answering ({exc})") from None
    extract(archive, folder / "content")
    coco, images = read_export(folder / "content", schema, source=f"export of job {job_id}")
    return ExportedJob(job.id, job.task_id, job.project_id, coco, images)


def read_export(folder: Path, schema: Schema, *, source: str) -> tuple[dict[str, Any], dict[str, Path]]:
    """The annotations (schema order) and image files of an extracted CVAT COCO export."""
    ann_file = folder / ANNOTATION_FILE
    if not ann_file.is_file():
        raise ExportError(f"{source}: the archive has no {ANNOTATION_FILE}")
    try:
        raw = read_json(ann_file)
        coco = to_schema_order(raw, schema, source=source)
        validate_coco(coco, schema, source=source)
    except DatasetError as exc:
        raise ExportError(str(exc)) from None
    images = {}
    for im in coco["images"]:
        path = _image_file(folder, im["file_name"])
        if path is None:
            raise ExportError(f"{source}: image {im['file_name']!r} is missing from the archive")
        images[im["file_name"]] = path
    return coco, images


def to_schema_order(coco: Any, schema: Schema, *, source: str) -> dict[str, Any]:
    """Re-order each annotation's keypoints from its category's point names to the schema's."""
    if not isinstance(coco, dict) or not isinstance(coco.get("categories"), list):
        raise ExportError(f"{source}: not a COCO keypoints document (no 'categories')")
    columns = {}
    for cat in coco["categories"]:
        names = cat.get("keypoints") or []
        if names:
            missing = [n for n in schema.names if n not in names]
            if len(missing) == len(schema.names):
                raise ExportError(f"{source}: label {cat.get('name')!r} has none of the schema's "
                                  f"points (it has {names[:4]}...)")
            columns[cat["id"]] = [names.index(n) if n in names else None for n in schema.names]
    anns = []
    for ann in coco.get("annotations") or []:
        cols = columns.get(ann.get("category_id"))
        if cols is None:
            continue  # a label without points (e.g. a box label) is not ours to learn from
        kps = ann.get("keypoints") or []
        out: list[float] = []
        for c in cols:
            out += [0.0, 0.0, 0] if c is None or 3 * c + 2 >= len(kps) else kps[3 * c:3 * c + 3]
        bbox = ann.get("bbox")
        if isinstance(bbox, list) and len(bbox) == 4 and (bbox[2] <= 0 or bbox[3] <= 0):
            log.warning("%s: skipping annotation %s: fewer than two distinct labelled points",
                        source, ann.get("id"))
            continue  # one labelled point gives no person box for a top-down model
        anns.append({**ann, "keypoints": out, "category_id": 1})
    return {**coco, "annotations": anns, "categories": [schema.coco_category()]}


def _image_file(folder: Path, name: str) -> Path | None:
    """CVAT puts images under images/<subset>/ (`default` for a job); accept any subset."""
    direct = folder / "images" / "default" / name
    if direct.is_file():
        return direct
    found = [p for p in (folder / "images").glob(f"*/{name}") if p.is_file()]
    return found[0] if found else None
