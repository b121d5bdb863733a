"""Flask application factory: `create_app(config=None)` — defaults, then CALS_* env, then `config`."""
from __future__ import annotations

import logging
from typing import Any, Mapping

from flask import Flask

from cals.cvat.probe import CvatProbe
from cals.http_service import add_health, install_errors
from sampler.config import load_config
from sampler.jobs import Jobs
from sampler.routes import bp, health_report
from sampler.service import Sampler
from sampler.state import EXTENSION, SamplerState


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app; a missing or wrong setting raises CalsError naming the variable.

    `config` may hold any `cals.settings.SamplerEnv` field (the variable without CALS_).
    """
    settings = load_config(config)
    app = Flask("sampler")
    app.config.update(settings.model_dump(exclude={"CVAT_PASSWORD", "CVAT_TOKEN"}))
    app.json.sort_keys = False
    init_app(app, Sampler(settings))
    install_errors(app, "sampler")
    app.register_blueprint(bp)
    add_health(app, health_report)
    logging.getLogger("sampler").setLevel(logging.INFO)
    return app


def init_app(app: Flask, sampler: Sampler) -> None:
    app.extensions[EXTENSION] = SamplerState(sampler, Jobs(), CvatProbe(sampler.cvat))
