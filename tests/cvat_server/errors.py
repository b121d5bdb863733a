"""Errors answered the way Django REST framework words them in CVAT."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    """An HTTP error with a DRF-style JSON body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


class BackgroundError(Exception):
    """Work of a background request failed; CVAT reports it as a "failed" request."""


def bad_request(message: str, field: str | None = None) -> ApiError:
    """400 as a serializer reports it: per field, or a bare list for whole-object errors."""
    return ApiError(400, {field: [message]} if field else [message])


def json_body() -> dict[str, Any]:
    """The request's JSON object, or the 400 DRF gives for anything else."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise bad_request("Invalid data. Expected a dictionary, but got a different type.",
                          "non_field_errors")
    return body


def not_found(what: str = "") -> ApiError:
    return ApiError(404, {"detail": f"No {what} matches the given query." if what else "Not found."})


def init_app(app: Flask) -> None:
    """Map our errors and werkzeug's routing errors (404/405) to JSON bodies."""

    @app.errorhandler(ApiError)
    def _api_error(err: ApiError):
        return jsonify(err.body), err.status

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        if err.code == 405:
            return jsonify({"detail": f'Method "{request.method}" not allowed.'}), 405
        detail = "Not found." if err.code == 404 else err.description
        return jsonify({"detail": detail}), err.code
