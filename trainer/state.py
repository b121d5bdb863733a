"""What the routes share, tied to the app (not module globals): settings, queue, worker, probe, report cache."""
from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from cals.cvat.probe import CvatProbe
from cals.training.queue import RunQueue
from cals.training.report import NumbersCache
from trainer.config import TrainerSettings
from trainer.worker import Worker


@dataclass(frozen=True)
class TrainerState:
    settings: TrainerSettings
    queue: RunQueue
    worker: Worker
    cvat: CvatProbe  # what /health says of CVAT
    report_cache: NumbersCache  # the loop report's computed numbers (cals.training.report.cache)


def trainer_state(app: Flask) -> TrainerState:
    return app.extensions["cals_trainer"]
