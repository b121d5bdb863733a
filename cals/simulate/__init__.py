"""`cals simulate`: the active-learning loop in-process, with a simulated annotator.

The annotator reveals ground truth for the frames a strategy picks; everything else — pool
scoring, ranking, fine-tune/evaluate/promote — is the code the sampler and trainer run.
"""
from cals.simulate.config import SimulationConfig
from cals.simulate.runner import run_simulation

__all__ = ["SimulationConfig", "run_simulation"]
