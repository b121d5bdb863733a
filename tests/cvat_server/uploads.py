"""CVAT's upload protocol as cvat-sdk speaks it (cvat/apps/engine/mixins.py UploadMixin).

One endpoint takes: `Upload-Start` (begin, 202), `Upload-Multiple` (a multipart batch of
`client_files[i]`, 200), TUS 1.0.0 creation (201 with `Location` and `Upload-Filename`) followed
by PATCH chunks (204 with `Upload-Offset`) and HEAD, and `Upload-Finish` (202 with an rq_id).
A plain multipart POST without these headers uploads and finishes at once.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable
from typing import Any

from flask import Response, g, jsonify, request

from .errors import ApiError, bad_request, not_found
from .state import Upload, current_store

Finish = Callable[[dict[str, bytes], dict[str, Any]], Response]


def _key(kind: str, obj_id: int, sub: str) -> str:
    return f"{kind}/{obj_id}/{sub}/{g.user.id}"


def _session(key: str) -> Upload:
    store = current_store()
    with store.lock:
        return store.uploads.setdefault(key, Upload())


def _multipart_files() -> dict[str, bytes]:
    """Django keeps only a file's base name; cvat-sdk sends full local paths."""
    return {os.path.basename(f.filename or name): f.read() for name, f in request.files.items()}


def _parse_metadata(header: str) -> dict[str, str]:
    meta = {}
    for pair in filter(None, header.split(",")):
        key, _, value = pair.strip().partition(" ")
        meta[key] = base64.b64decode(value).decode() if value else ""
    return meta


def _tus_create(upload: Upload, base_url: str) -> Response:
    try:
        length = int(request.headers["Upload-Length"])
        filename = _parse_metadata(request.headers.get("Upload-Metadata", ""))["filename"]
    except (KeyError, ValueError):
        raise bad_request("TUS upload needs Upload-Length and a filename in Upload-Metadata.")
    file_id = uuid.uuid4().hex
    upload.tus[file_id] = {"name": os.path.basename(filename), "length": length, "data": bytearray()}
    response = Response(status=201)
    response.headers.update({"Location": f"{base_url.rstrip('/')}/{file_id}",
                             "Upload-Filename": os.path.basename(filename), "Tus-Resumable": "1.0.0"})
    return response


def _finish_fields() -> dict[str, Any]:
    """Data uploads send fields as a JSON body; annotation uploads as query parameters."""
    body = request.get_json(silent=True) if request.data else None
    if request.data and body is None:
        raise bad_request("JSON parse error in the Upload-Finish request body.")
    return {**request.args.to_dict(), **(body or {})}


def handle(kind: str, obj_id: int, sub: str, finish: Finish) -> Response:
    """Dispatch one POST of the upload protocol for /api/<kind>/<id>/<sub>/."""
    key = _key(kind, obj_id, sub)
    headers = request.headers
    if "Upload-Start" in headers:
        current_store().uploads[key] = Upload()
        return Response(status=202)
    if "Upload-Multiple" in headers:
        _session(key).files.update(_multipart_files())
        return jsonify({}), 200
    if "Tus-Resumable" in headers:
        return _tus_create(_session(key), request.base_url)
    if "Upload-Finish" in headers:
        upload = current_store().uploads.pop(key, Upload())
        return finish(upload.files, _finish_fields())
    if request.files:
        return finish(_multipart_files(), {**request.args.to_dict(), **request.form.to_dict()})
    raise bad_request("Expected an upload: Upload-Start, Upload-Multiple, TUS or Upload-Finish.")


def handle_chunk(kind: str, obj_id: int, sub: str, file_id: str) -> Response:
    """PATCH appends a TUS chunk; HEAD reports the offset."""
    upload = current_store().uploads.get(_key(kind, obj_id, sub))
    entry = upload.tus.get(file_id) if upload else None
    if entry is None:
        raise not_found()
    headers = {"Upload-Offset": str(len(entry["data"])), "Upload-Length": str(entry["length"]),
               "Tus-Resumable": "1.0.0"}
    if request.method == "HEAD":
        return Response(status=200, headers=headers)
    if int(request.headers.get("Upload-Offset", -1)) != len(entry["data"]):
        raise ApiError(409, {"detail": "Upload-Offset does not match the upload's offset."})
    entry["data"] += request.get_data()
    if len(entry["data"]) > entry["length"]:
        raise bad_request("Chunk goes past Upload-Length.")
    if len(entry["data"]) == entry["length"]:
        upload.files[entry["name"]] = bytes(entry["data"])
    headers["Upload-Offset"] = str(len(entry["data"]))
    return Response(status=204, headers=headers)


def register(bp, path: str, kind: str, sub: str, finish_for: Callable[[int], Finish]) -> None:
    """Add the POST and the TUS chunk routes of one upload endpoint to a blueprint."""

    def post(obj_id: int):
        return handle(kind, obj_id, sub, finish_for(obj_id))

    def chunk(obj_id: int, file_id: str):
        return handle_chunk(kind, obj_id, sub, file_id)

    bp.add_url_rule(path, f"{kind}_{sub}_upload", post, methods=["POST"])
    bp.add_url_rule(path + "<file_id>", f"{kind}_{sub}_chunk", chunk, methods=["PATCH", "HEAD"])
