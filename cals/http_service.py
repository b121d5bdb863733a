"""The HTTP shell the trainer and the sampler share: bearer-token auth, JSON errors with the right
status and never a traceback, one health route, and the production server (gunicorn, one process).

Both services hold state that must exist once (the training worker, loaded models and the round
queue), so each runs one gunicorn worker process with a few request threads.
"""
from __future__ import annotations

import hmac
import logging
from functools import wraps
from typing import Any, Callable

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)
HEALTH = "/health"
TOKEN_HELP = "missing or wrong bearer token (Authorization: Bearer $CALS_API_TOKEN)"


class ApiError(Exception):
    """Raised by a route to answer `status` with `{"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def valid_bearer(token: str, header: str | None) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time; an empty token never matches."""
    scheme, _, given = (header or "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


def require_token(view: Callable) -> Callable:
    """The route needs `Authorization: Bearer` with the app's config["API_TOKEN"] ($CALS_API_TOKEN)."""
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any):
        if not valid_bearer(current_app.config["API_TOKEN"], request.headers.get("Authorization")):
            raise ApiError(401, TOKEN_HELP)
        return view(*args, **kwargs)
    return wrapped


def install_errors(app: Flask, service: str) -> None:
    """JSON errors: ApiError as raised, HTTP errors with their status, anything else 500 (logged)."""
    @app.errorhandler(ApiError)
    def _api_error(err: ApiError):
        return jsonify(error=err.message), err.status

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        if err.code == 404:
            return jsonify(error=f"no endpoint {request.path}"), 404
        if err.code == 405:
            return jsonify(error=f"{request.method} is not allowed on {request.path}"), 405
        return jsonify(error=err.description or err.name), err.code

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        log.exception("unhandled error on %s", request.path)
        return jsonify(error=f"internal error ({type(err).__name__}); see the {service} log"), 500


def add_health(app: Flask, report: Callable[[], dict[str, Any]], *, aliases: tuple[str, ...] = ()) -> None:
    """GET /health (and `aliases`): `{"status": "ok", ...report()}`; needs no token."""
    def health():
        return jsonify({"status": "ok", **report()})

    for rule in (HEALTH, *aliases):
        app.add_url_rule(rule, endpoint=f"health{rule.replace('/', '_')}", view_func=health, methods=["GET"])


def serve(load_app: Callable[[], Flask], *, bind: str, threads: int = 4, timeout: int = 120) -> None:
    """Serve with gunicorn: one worker process (see the module doc), `threads` request threads.

    `load_app` runs in the worker process, so threads the app starts live where requests are served."""
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in {"bind": bind, "workers": 1, "worker_class": "gthread", "threads": threads,
                               "timeout": timeout, "preload_app": False, "accesslog": "-"}.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            return load_app()

    Server().run()
