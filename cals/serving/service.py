"""Person boxes from the detector, poses from the registry's current model: one call per image.

`SkeletonService` is what both shells (Nuclio `main.py`, the cvat-sdk function)
hold for their lifetime. Its settings are `cals.settings.ServingEnv` (CALS_REGISTRY and CALS_DETECTOR
required; the detector score, the initial checkpoint and its config, device, pose backend, flip test).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from cals.errors import CalsError
from cals.registry import Registry, Version
from cals.serving.initial import ensure_initial_model
from cals.serving.watcher import ModelWatcher
from cals.settings import ServingEnv

log = logging.getLogger(__name__)


@dataclass
class Annotated:
    """What the service found in one image, with the model that found it."""

    people: list  # PersonPose, keypoints in image pixels
    box_scores: np.ndarray  # (N,) detector scores
    predictor: object  # the Predictor used (schema, version_id, spine_trained)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    @property
    def prior_points(self) -> list[int]:
        """Indices placed by the geometric prior (the spine, until a model has learnt it)."""
        return [] if self.predictor.spine_trained else self.predictor.schema.groups.get("spine", [])


class SkeletonService:
    """Detect people, then pose them with whatever version is current when the call starts."""

    def __init__(self, registry: Registry, detector, *, device: str | None = None) -> None:
        self.registry = registry
        self.detector = detector
        self.device = device
        self.watcher: ModelWatcher = ModelWatcher(registry, self._load)

    @classmethod
    def from_env(cls) -> "SkeletonService":
        """Build from CALS_* settings (module docstring); registers the initial model if needed."""
        from cals.model.detector import PersonDetector

        env = ServingEnv.load()
        env.require("REGISTRY", why="the model registry folder")
        registry = Registry(env.REGISTRY)
        detector = PersonDetector(env.DETECTOR, score_threshold=env.DETECTOR_SCORE)
        if env.INIT_CHECKPOINT and registry.current() is None:
            try:
                ensure_initial_model(registry, env.INIT_CHECKPOINT, config=env.INIT_CONFIG)
            except CalsError as e:  # keep running: a trainer's promote still brings a model
                log.error("cannot register the initial model: %s", e)
        service = cls(registry, detector, device=env.DEVICE)
        try:
            service.watcher.get()  # load now, not on the first request
        except CalsError as e:
            log.warning("%s", e)
        return service

    def _load(self, version: Version):
        from cals.model.predict import Predictor

        return Predictor(version.path, device=self.device, version_id=version.id)

    def annotate(self, image: np.ndarray, *, box_score: float | None = None) -> Annotated:
        """People in a BGR image; `box_score` overrides the detector's threshold."""
        predictor = self.watcher.get()  # kept for the whole call, whatever is promoted meanwhile
        t0 = time.perf_counter()
        boxes = self.detector(image, box_score)
        t1 = time.perf_counter()
        people = predictor.predict(image, boxes[:, :4], distributions=False) if len(boxes) else []
        t2 = time.perf_counter()
        return Annotated(people=people, box_scores=boxes[:, 4].copy(), predictor=predictor,
                         timings={"detect": t1 - t0, "pose": t2 - t1})
