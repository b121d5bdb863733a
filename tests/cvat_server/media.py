"""Task data: decoding uploaded images, frame order (sorting / job_file_mapping) and jobs.

The rules are CVAT's (cvat/apps/engine/task.py): `job_file_mapping` fixes both the frame
order and the jobs and cannot be combined with `segment_size` or an explicit non-default
`sorting_method`; "predefined" keeps the client's `upload_file_order`.
"""

from __future__ import annotations

import io
import random
import re
from typing import Any

from PIL import Image, UnidentifiedImageError

from .errors import BackgroundError, bad_request
from .state import Frame, Job, Store, Task

SORTING_METHODS = ("lexicographical", "natural", "predefined", "random")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".jpe")


class MediaError(BackgroundError):
    """Task data that CVAT's task-creation worker would reject."""


def validate_fields(fields: Any) -> dict[str, Any]:
    """The DataSerializer checks that CVAT answers with 400 at Upload-Finish."""
    if not isinstance(fields, dict):
        raise bad_request("Invalid data. Expected a dictionary.", "non_field_errors")
    quality = fields.get("image_quality")
    if not isinstance(quality, int) or not 0 <= quality <= 100:
        raise bad_request("This field is required and must be an integer in [0, 100].",
                          "image_quality")
    sorting = fields.get("sorting_method", "lexicographical")
    if sorting not in SORTING_METHODS:
        raise bad_request(f'"{sorting}" is not a valid choice.', "sorting_method")
    mapping = fields.get("job_file_mapping")
    if mapping is not None:
        if not isinstance(mapping, list) or not all(
            isinstance(job, list) and job and all(isinstance(n, str) for n in job) for job in mapping
        ):
            raise bad_request("Expected a list of non-empty lists of file names.", "job_file_mapping")
        names = [n for job in mapping for n in job]
        if len(set(names)) != len(names):
            raise bad_request("The same file cannot be used in several jobs.", "job_file_mapping")
    for unsupported in ("start_frame", "stop_frame", "frame_filter", "server_files",
                        "remote_files", "cloud_storage_id", "validation_params"):
        if fields.get(unsupported):
            raise bad_request("Not supported by the CALS test server.", unsupported)
    return fields


def natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def order_files(names: list[str], fields: dict[str, Any]) -> list[str]:
    """Frame order for the chosen `sorting_method` (received order for "predefined")."""
    sorting = fields.get("sorting_method", "lexicographical")
    if sorting == "lexicographical":
        return sorted(names)
    if sorting == "natural":
        return sorted(names, key=natural_key)
    if sorting == "random":
        return random.sample(names, len(names))
    order = fields.get("upload_file_order") or names
    if sorted(order) != sorted(names):
        raise bad_request("Uploaded files do not match the 'upload_file_order' field contents",
                          "upload_file_order")
    return list(order)


def read_frame(name: str, data: bytes) -> Frame:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            return Frame(name, data, image.width, image.height, image.get_format_mimetype())
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise MediaError(f"Could not read image {name!r}: {err}") from err


def _check_mapping(task: Task, fields: dict[str, Any], names: list[str]) -> list[list[str]] | None:
    mapping = fields.get("job_file_mapping")
    if mapping is None:
        return None
    if task.segment_size:
        raise MediaError("job_file_mapping cannot be used with segment_size")
    if fields.get("sorting_method", "lexicographical") != "lexicographical":
        raise MediaError("job_file_mapping cannot be used with sorting_method")
    for name in (n for job in mapping for n in job):
        if name not in names:
            raise MediaError(f"Can't find file '{name}' in the input files")
    return mapping


def _segments(task: Task, size: int, mapping: list[list[str]] | None) -> list[tuple[int, int]]:
    if mapping is not None:
        bounds, start = [], 0
        for job in mapping:
            bounds.append((start, start + len(job) - 1))
            start += len(job)
        return bounds
    segment = task.segment_size if 0 < task.segment_size < size else size
    task.segment_size = segment
    overlap = min(task.overlap or 0, segment - 1)
    bounds, start = [], 0
    while True:
        stop = min(start + segment - 1, size - 1)
        bounds.append((start, stop))
        if stop == size - 1:
            return bounds
        start = stop + 1 - overlap


def create_task_data(store: Store, task: Task, files: dict[str, bytes], fields: dict[str, Any]) -> None:
    """Turn uploaded files into frames and jobs, or raise MediaError like CVAT's worker."""
    images = {n: d for n, d in files.items() if n.lower().endswith(IMAGE_SUFFIXES)}
    if not images:
        raise MediaError("No media data found")
    mapping = _check_mapping(task, fields, list(images))
    names = [n for job in mapping for n in job] if mapping else order_files(list(images), fields)
    frames = [read_frame(n, images[n]) for n in names]
    first = frames[0]
    with store.lock:
        task.frames = frames
        task.image_quality = fields["image_quality"]
        task.sorting_method = "predefined" if mapping else fields.get("sorting_method", "lexicographical")
        task.chunk_size = fields.get("chunk_size") or max(2, min(72, 36 * 1920 * 1080 // (first.width * first.height)))
        task.overlap = task.overlap or 0
        task.data_id = store.next_id("data")
        for start, stop in _segments(task, len(frames), mapping):
            job = Job(id=store.next_id("job"), task_id=task.id, start_frame=start, stop_frame=stop)
            store.jobs[job.id] = job
