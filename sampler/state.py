"""The sampler app's state, one typed entry in Flask's `extensions` (as trainer/state.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask

if TYPE_CHECKING:
    from cals.cvat.probe import CvatProbe
    from sampler.jobs import Jobs
    from sampler.service import Sampler

EXTENSION = "cals_sampler"


@dataclass(frozen=True)
class SamplerState:
    sampler: "Sampler"
    jobs: "Jobs"
    cvat: "CvatProbe"  # what /health says of CVAT


def sampler_state(app: Flask) -> SamplerState:
    return app.extensions[EXTENSION]
