"""The Flask app factory: one `Store`, CVAT's API routes, DRF-style errors."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, jsonify
from packaging.version import Version

from . import (annotations, auth, background, datasets, errors, jobs, labels, lambda_functions, projects,
               tasks, webhooks)
from .coco import FORMAT
from .state import Store

SERVER_VERSION = "2.80.0"
DEFAULTS: dict[str, Any] = {"CVAT_USERS": {"admin": "admin"}, "CVAT_VERSION": SERVER_VERSION,
                            "CVAT_SERVERLESS": True}

server_bp = Blueprint("server", __name__)


@server_bp.get("/api/server/about")
def about():
    from flask import current_app

    version = current_app.config["CVAT_VERSION"]
    about = {"name": "Computer Vision Annotation Tool",
             "description": "CVAT-compatible test server of CALS (tests/cvat_server)", "version": version}
    if Version(version) >= Version("2.24"):  # CVAT 2.23.1 answers without these two (checked)
        about.update(logo_url="", subtitle="test server")
    return jsonify(about)


@server_bp.get("/api/server/plugins")
def plugins():
    """MODELS is CVAT's CVAT_SERVERLESS setting: when false its web UI hides AI Tools and automatic annotation."""
    from flask import current_app

    return jsonify({"GIT_INTEGRATION": False, "ANALYTICS": False, "PREDICT": False,
                    "MODELS": bool(current_app.config["CVAT_SERVERLESS"])})


@server_bp.get("/api/server/annotation/formats")
def formats():
    fmt = {"name": FORMAT, "ext": "JSON, ZIP", "version": "1.0", "enabled": True, "dimension": "2d"}
    return jsonify({"importers": [fmt], "exporters": [{**fmt, "ext": "ZIP"}]})


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the server; `config` may set CVAT_USERS ({username: password}) and CVAT_VERSION."""
    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.update(config or {})
    app.config["CVAT_STORE"] = Store(app.config["CVAT_USERS"])
    app.url_map.strict_slashes = False
    errors.init_app(app)
    auth.init_app(app)
    for bp in (server_bp, projects.bp, tasks.bp, jobs.bp, labels.bp, annotations.bp,
               datasets.bp, background.bp, webhooks.bp, lambda_functions.bp):
        app.register_blueprint(bp)
    return app
