"""Frame and chunk responses shared by the task and job data endpoints."""

from __future__ import annotations

import io
import zipfile

from flask import Response, request
from PIL import Image

from . import serialize
from .errors import bad_request
from .state import Frame, Task


def _jpeg(frame: Frame, quality: int) -> bytes:
    with Image.open(io.BytesIO(frame.data)) as image:
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=quality)
        return out.getvalue()


def frame_response(task: Task, frame: Frame) -> Response:
    """"original" quality is the uploaded file byte for byte; "compressed" is a JPEG."""
    if request.args.get("quality", "compressed") == "original":
        return Response(frame.data, mimetype=frame.mime)
    return Response(_jpeg(frame, task.image_quality), mimetype="image/jpeg")


def chunk_response(task: Task, frames: list[Frame]) -> Response:
    """An imageset chunk: a zip of the chunk's frames named by their index."""
    original = request.args.get("quality", "compressed") == "original"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for i, frame in enumerate(frames):
            data = frame.data if original else _jpeg(frame, task.image_quality)
            archive.writestr(f"{i:06d}{'.jpg' if not original else '.' + frame.mime.split('/')[-1]}", data)
    return Response(out.getvalue(), mimetype="application/zip")


def data_response(task: Task, first: int, last: int, number: int | None) -> Response:
    """GET .../data?type=frame|chunk|preview for frames first..last of a task."""
    kind = request.args.get("type")
    if kind == "frame":
        if number is None or not first <= number <= last:
            raise bad_request(f"The frame number should be in the [{first}, {last}] range")
        return frame_response(task, task.frames[number])
    if kind == "chunk":
        size = task.chunk_size or 1
        start = first + (number or 0) * size
        if number is None or number < 0 or start > last:
            raise bad_request("The chunk number is out of range")
        return chunk_response(task, task.frames[start : min(start + size, last + 1)])
    raise bad_request(f'"{kind}" is not a valid choice.', "type")


def preview_response(frame: Frame) -> Response:
    with Image.open(io.BytesIO(frame.data)) as image:
        image = image.convert("RGB")
        image.thumbnail((256, 256))
        out = io.BytesIO()
        image.save(out, "JPEG")
    return Response(out.getvalue(), mimetype="image/jpeg")


def meta(task: Task, first: int, last: int) -> dict:
    """CVAT's DataMetaRead for a task (all frames) or a job (its segment)."""
    return {
        "chunks_updated_date": serialize.date(task.updated),
        "chunk_size": task.chunk_size,
        "size": last - first + 1 if task.frames else 0,
        "image_quality": task.image_quality,
        "start_frame": first,
        "stop_frame": last,
        "frame_filter": "",
        "frames": [{"name": f.name, "width": f.width, "height": f.height, "related_files": 0,
                    "has_related_context": False} for f in task.frames[first : last + 1]],
        "deleted_frames": [],
        "included_frames": None,
        "chapters": None,
        "storage": "local",
        "cloud_storage_id": None,
    }
