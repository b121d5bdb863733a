"""`cals simulate`: the active-learning loop in-process, with a simulated annotator.

The annotator reveals ground truth for the frames a strategy picks; everything else — pool
scoring, ranking, fine-tune/evaluate/promote — is the code the sampler and trainer run.
"""
from typing import Any

from cals.simulate.config import SimulationConfig

__all__ = ["SimulationConfig", "run_simulation"]


def __getattr__(name: str) -> Any:
    # run_simulation on first use: `cals --help` builds its parser from SimulationConfig's defaults and
    # must not wait for torch (the runner imports it)
    if name == "run_simulation":
        from cals.simulate.runner import run_simulation

        return run_simulation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
