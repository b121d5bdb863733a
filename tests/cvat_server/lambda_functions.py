"""`GET /api/lambda/functions`: the serverless functions CVAT lists from Nuclio.

Tests "deploy" a function by handing its function.yaml to `CvatTestServer.deploy_function`, which
turns it into the entry CVAT's lambda manager builds from the Nuclio spec (id = metadata.name,
kind = annotations.type, labels_v2 from annotations.spec). With NUCLIO_REACHABLE off the list answers
503, as CVAT does when it cannot reach Nuclio's dashboard (the API answers whatever CVAT_SERVERLESS
says; that setting only decides, through /api/server/plugins, whether the web UI offers functions).
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from flask import Blueprint, current_app, jsonify

from .state import current_store

bp = Blueprint("lambda_functions", __name__)


def function_entry(spec_yaml: str) -> dict[str, Any]:
    """CVAT's description of a deployed Nuclio function, from its function.yaml text."""
    doc = yaml.safe_load(spec_yaml)
    meta = doc["metadata"]
    notes = meta.get("annotations", {})
    return {"id": meta["name"], "kind": notes.get("type"), "labels_v2": _labels(json.loads(notes.get("spec") or "[]")),
            "description": doc.get("spec", {}).get("description", ""), "name": notes.get("name", meta["name"]),
            "version": int(notes.get("version", 1)), "help_message": notes.get("help_message", "")}


def _labels(spec: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for label in spec:
        entry = {"name": label["name"], "type": label.get("type", "unknown"), "attributes": label.get("attributes", [])}
        if entry["type"] == "skeleton":
            entry["sublabels"] = _labels(label.get("sublabels", []))
            entry["svg"] = label.get("svg", "")
        out.append(entry)
    return out


@bp.get("/api/lambda/functions")
def list_functions():
    if not current_app.config.get("NUCLIO_REACHABLE", True):
        return jsonify({"detail": "Could not connect to the Nuclio dashboard"}), 503
    return jsonify(list(current_store().functions.values()))
