"""The loop report (cals.training.report): GET /report (HTML) and GET /report.json.

Read endpoints, like /runs and /models: no token (the trainer listens on the compose network,
next to CVAT; see trainer/README.md, "Loop report").
"""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from cals.cvat.client import connect
from cals.training.queue import RunQueue
from cals.training.report import NumbersCache, loop_report, render_page
from cals.training.run import RunSettings
from trainer.state import trainer_state

bp = Blueprint("report", __name__)


@bp.get("/report.json")
def report_json():
    return jsonify(_report())


@bp.get("/report")
def report_page():
    return Response(render_page(_report()), mimetype="text/html")


def _report() -> dict:
    """CVAT is asked for the rounds' job states unless the trainer's probe has just found it down."""
    state = trainer_state(current_app)
    run = state.settings.run
    probe = state.cvat.report()
    report = loop_report(run.data_root, run.registry, state.queue, run.schema, tolerance=run.effort_tolerance,
                         cvat=(lambda: connect(run.cvat)) if probe.get("reachable", True) else None,
                         trigger=run.trigger, cache=state.report_cache)
    if not probe.get("reachable", True) and report["rounds"]:
        report["cvat_note"] = probe.get("error") or "CVAT does not answer"
    return report


def refresh_numbers(run: RunSettings, queue: RunQueue, cache: NumbersCache) -> None:
    """Compute (into `cache`) the numbers of what a run just learned, without asking CVAT."""
    loop_report(run.data_root, run.registry, queue, run.schema, tolerance=run.effort_tolerance, cache=cache)
