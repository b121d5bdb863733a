"""CALS training sidecar: CVAT webhooks in, fine-tuned and promoted models out.

`create_app(config)` is the Flask application factory: defaults, then `CALS_*` environment
variables, then `config` (tests); see trainer/README.md.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from flask import Flask

from cals.cvat.client import connect
from cals.cvat.probe import CvatProbe
from cals.http_service import add_health, install_errors
from cals.training.catch_up import CatchUp
from cals.training.queue import RunQueue
from cals.training.report import NumbersCache
from trainer import api, report, webhooks, worker
from trainer.config import load
from trainer.state import TrainerState


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app; raises cals.settings.SettingsError before serving on bad configuration."""
    settings = load(config)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024  # webhook payloads are a few KB
    app.config["API_TOKEN"] = settings.api_token
    queue = RunQueue(settings.queue_db)
    install_errors(app, "trainer")
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(report.bp)
    add_health(app, api.health_report, aliases=("/healthz",))  # /healthz: its route before /health, kept
    numbers = NumbersCache(settings.run.data_root / "report" / "numbers.json")
    run_worker = worker.init_app(app, queue, settings.run, start=settings.worker,
                                 poll_seconds=settings.worker_poll_seconds, catch_up=_catch_up(settings, queue),
                                 after_run=lambda: report.refresh_numbers(settings.run, queue, numbers))
    app.extensions["cals_trainer"] = TrainerState(settings, queue, run_worker, CvatProbe(settings.run.cvat), numbers)
    logging.getLogger(__name__).info("trainer ready: queue %s, registry %s", settings.queue_db,
                                     settings.run.registry.root)
    return app


def _catch_up(settings, queue: RunQueue) -> CatchUp | None:
    """Catch-up for the project (trainer/README.md, "Catch-up"); off at CALS_CATCHUP_SECONDS=0 or
    without CALS_PROJECT_ID (the webhook alone then says which project's jobs to learn)."""
    if settings.catchup_seconds <= 0:
        return None
    if settings.project_id is None:
        logging.getLogger(__name__).warning("catch-up is off: it needs CALS_PROJECT_ID (the project whose "
                                            "completed jobs to list); a missed webhook is then never learned")
        return None
    return CatchUp(lambda: connect(settings.run.cvat), settings.project_id, settings.run.trigger, queue,
                   interval=settings.catchup_seconds)
