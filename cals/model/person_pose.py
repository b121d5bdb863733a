"""One predicted person, as every stage reads it: a plain record without torch, so that the
sampling strategies (and the sampler's configuration, which validates their names) import no torch."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PersonPose:
    bbox: np.ndarray  # (4,) x1, y1, x2, y2 in image pixels
    keypoints: np.ndarray  # (K, 2) image pixels
    scores: np.ndarray  # (K,) in [0, 1]
    distributions: dict[str, np.ndarray] = field(default_factory=dict)
    # "heatmaps": (K, H, W) for heatmap heads; "simcc_x": (K, Wx), "simcc_y": (K, Wy) for SimCC
    feature: np.ndarray | None = None  # (C,) the crop's pooled backbone feature (diversity strategies)
