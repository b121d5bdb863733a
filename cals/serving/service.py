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
from cals.serving.watcher import ModelWatcher, NoModel
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

    def __init__(self, registry: Registry, detector, *, device: str | None = None,
                 initial_error: str | None = None, check_below: float | None = None) -> None:
        from cals.cvat.point_checks import check_below as check_setting

        self.registry = registry
        self.detector = detector
        self.device = device
        self.check_below = check_setting() if check_below is None else check_below  # CALS_CHECK_BELOW
        self.watcher: ModelWatcher = ModelWatcher(registry, self._load)
        # why the initial model could not be registered: the 503 says it until a version is promoted
        self.initial_error = initial_error

    @classmethod
    def from_env(cls) -> "SkeletonService":
        """Build from CALS_* settings (module docstring); registers the initial model if needed.

        Threads are sized first: cores / CALS_FUNCTION_WORKERS (the trigger's numWorkers)."""
        from cals.model import threads
        from cals.model.detector import PersonDetector

        env = ServingEnv.load()
        env.require("REGISTRY", why="the model registry folder")
        # Each Nuclio worker is a process of its own holding its own models: its share of the cores
        # (or CALS_THREADS) for torch, the detector's session and every pose session built after this
        count = threads.configure(env.FUNCTION_WORKERS)
        registry = Registry(env.REGISTRY)
        detector = PersonDetector(env.DETECTOR, score_threshold=env.DETECTOR_SCORE, threads=count)
        initial_error = None
        if env.INIT_CHECKPOINT and registry.current() is None:
            initial_error = register_initial(registry, env.INIT_CHECKPOINT, env.CONFIG)
        service = cls(registry, detector, device=env.DEVICE, initial_error=initial_error,
                      check_below=env.CHECK_BELOW)
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
        try:
            predictor = self.watcher.get()  # kept for the whole call, whatever is promoted meanwhile
        except NoModel as e:
            if self.initial_error is None:
                raise
            raise NoModel(f"{self.initial_error}; {e}") from None
        t0 = time.perf_counter()
        boxes = self.detector(image, box_score)
        t1 = time.perf_counter()
        people = predictor.predict(image, boxes[:, :4], distributions=False) if len(boxes) else []
        t2 = time.perf_counter()
        return Annotated(people=people, box_scores=boxes[:, 4].copy(), predictor=predictor,
                         timings={"detect": t1 - t0, "pose": t2 - t1})


def register_initial(registry: Registry, checkpoint: str, config: str) -> str | None:
    """Register and promote the initial model; on failure, the one-line reason the 503 gives.

    The function keeps running either way: a version promoted later (e.g. by `cals train --init
    CHECKPOINT`; the trainer only fine-tunes) is served as soon as it appears. Nothing retries here, since the same checkpoint fails the same
    way; restarting the function (after fixing the checkpoint) retries.
    """
    try:
        ensure_initial_model(registry, checkpoint, config=config)
        return None
    except Exception as e:  # noqa: BLE001 - whatever failed, the function must come up and say why
        log.exception("cannot register the initial model from %s", checkpoint)
        reason = " ".join((str(e) or type(e).__name__).split())[:400]
        if not isinstance(e, CalsError):
            reason = f"{type(e).__name__}: {reason}"
        return (f"initial model could not be registered from CALS_INIT_CHECKPOINT={checkpoint} "
                f"(CALS_CONFIG={config}): {reason}; fix it and restart the function, "
                f"or promote a version into {registry.root}")
