"""Authentication as CVAT does it: session cookie + CSRF, `Token` keys, and Basic auth.

cvat-sdk logs in with POST /api/auth/login, keeps the `sessionid` and `csrftoken` cookies and
echoes the CSRF token in `X-CSRFToken`; wrong login credentials are a 400 (dj-rest-auth), while
requests with missing or bad credentials are a 401.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from flask import Blueprint, Flask, g, jsonify, request

from . import serialize
from .errors import ApiError, bad_request
from .state import User
from .state import current_store as store

bp = Blueprint("auth", __name__)
OPEN_PATHS = {"/api/server/about", "/api/auth/login", "/api/auth/logout"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}




def _basic_user(header: str) -> User:
    try:
        name, _, password = base64.b64decode(header).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(401, {"detail": "Invalid basic header. Credentials not correctly base64 encoded."})
    found = store().user_by_name(name)
    if found is None or found.password != password:
        raise ApiError(401, {"detail": "Invalid username/password."})
    return found


def _token_user(key: str) -> User:
    found = next((u for u in store().users.values() if u.token == key), None)
    if found is None:
        raise ApiError(401, {"detail": "Invalid token."})
    return found


def _session_user() -> User | None:
    user_id = store().sessions.get(request.cookies.get("sessionid", ""))
    if user_id is None:
        return None
    if request.method not in SAFE_METHODS:
        token = request.headers.get("X-CSRFToken")
        if not token or token != request.cookies.get("csrftoken"):
            raise ApiError(403, {"detail": "CSRF Failed: CSRF token missing or incorrect."})
    return store().users[user_id]


def authenticate() -> None:
    """Resolve `g.user` for every /api request; anonymous access only to open paths."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        g.user = _basic_user(value)
    elif scheme.lower() == "token":
        g.user = _token_user(value.strip())
    elif scheme.lower() == "bearer":
        raise ApiError(401, {"detail": "Invalid token."})
    else:
        g.user = _session_user()
    if g.user is None and request.path not in OPEN_PATHS and request.path.startswith("/api/"):
        raise ApiError(401, {"detail": "Authentication credentials were not provided."})


@bp.post("/api/auth/login")
def login():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise bad_request("Invalid data. Expected a dictionary.", "non_field_errors")
    username = body.get("username") or body.get("email") or ""
    found = store().user_by_name(username.split("@")[0] if "@" in username else username)
    if found is None or found.password != body.get("password"):
        raise bad_request("Unable to log in with provided credentials.", "non_field_errors")
    session = secrets.token_hex(16)
    with store().lock:
        store().sessions[session] = found.id
    response = jsonify({"key": found.token})
    response.set_cookie("sessionid", session, httponly=True, samesite="Lax")
    response.set_cookie("csrftoken", secrets.token_hex(16), samesite="Lax")
    return response


@bp.post("/api/auth/logout")
def logout():
    with store().lock:
        store().sessions.pop(request.cookies.get("sessionid", ""), None)
    response = jsonify({"detail": "Successfully logged out."})
    response.delete_cookie("sessionid")
    return response


@bp.get("/api/users/self")
def users_self():
    return jsonify(serialize.full_user(g.user))


@bp.get("/api/users")
def users_list():
    users = sorted(store().users.values(), key=lambda u: u.id)
    if name := request.args.get("username"):
        users = [u for u in users if u.username == name]
    return jsonify(serialize.paginated([serialize.user(u) for u in users]))


@bp.get("/api/users/<int:user_id>")
def users_retrieve(user_id: int):
    found = store().users.get(user_id)
    if found is None:
        raise ApiError(404, {"detail": "No User matches the given query."})
    return jsonify(serialize.user(found))


def init_app(app: Flask) -> None:
    app.before_request(authenticate)
    app.register_blueprint(bp)
