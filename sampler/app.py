"""Flask application factory: `create_app(config=None)` — defaults, then CALS_* env, then `config`."""
from __future__ import annotations

import logging
from typing import Any, Mapping

from flask import Flask

from cals.cvat.client import CvatSettings
from cals.http_service import add_health, install_errors
from sampler.config import load_config
from sampler.jobs import Jobs
from sampler.routes import bp, health_report
from sampler.service import Sampler
from sampler.state import EXTENSION, SamplerState


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app; a missing or wrong setting raises CalsError naming the variable.

    `config` may hold any DEFAULTS key, plus "CVAT" (a CvatSettings) to bypass CALS_CVAT_* in tests.
    """
    config = dict(config or {})
    cvat = config.pop("CVAT", None)
    settings = load_config(config)
    if cvat is None:
        cvat = CvatSettings.from_env()
    app = Flask("sampler")
    app.config.update(settings)
    app.json.sort_keys = False
    init_app(app, Sampler(settings, cvat))
    install_errors(app, "sampler")
    app.register_blueprint(bp)
    add_health(app, health_report)
    logging.getLogger("sampler").setLevel(logging.INFO)
    return app


def init_app(app: Flask, sampler: Sampler) -> None:
    app.extensions[EXTENSION] = SamplerState(sampler, Jobs())
