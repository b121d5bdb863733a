"""One learning round: fine-tune from the current model, score candidate and current on the same
validation split, promote by `cals.training.promotion.decide`.

The trainer's runs and `cals simulate` both call `fine_tune_round`, so a model is promoted by
one rule wherever it was trained. The current version is re-evaluated every round because the
validation split grows: a stored metric of it may have been measured on fewer frames.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

from cals.data.coco import ANNOTATIONS, read_json
from cals.training.promotion import (DEFAULT_CONFIDENCE, DEFAULT_MARGIN, DEFAULT_METRIC, Decision, decide,
                                     without_person_oks)
from cals.registry import Registry, Version
from cals.training.train_process import PoolData, TrainFn, train_in_process

log = logging.getLogger(__name__)
PhaseCallback = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class RoundOutcome:
    version: Version
    decision: Decision
    candidate_metrics: dict | None
    current_metrics: dict | None
    previous: str | None  # the version current when the round started

    @property
    def promoted(self) -> bool:
        return self.decision.promote

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version.id, "promoted": self.promoted, "reason": self.decision.reason,
                "candidate": self.decision.candidate, "current": self.decision.current,
                "previous": self.previous}


def fine_tune_round(train_root: str | os.PathLike, val_root: str | os.PathLike, registry: Registry, *,
                    config: str = "cpu", iters: int | None = None, batch_size: int | None = None,
                    margin: float = DEFAULT_MARGIN, metric: str = DEFAULT_METRIC,
                    confidence: float = DEFAULT_CONFIDENCE, on_progress: PhaseCallback | None = None,
                    work_dir: str | os.PathLike | None = None, init: Version | None = None,
                    train_fn: TrainFn | None = None, pool: PoolData | None = None,
                    int8: bool = True) -> RoundOutcome:
    """Train a candidate (from the current version when there is one), evaluate, maybe promote.

    `config` is for a first model: fine-tuning keeps the current version's own config (its weights
    fit no other; the function's initial model is an rtmpose-m whatever the trainer's CALS_CONFIG).
    `work_dir`: where training writes its scratch files (default: a temp dir); the trainer gives
    each run its own folder so a killed run's files can be found and removed at the next start.
    `init`: the version to train from instead of the current one (e.g. the base model, to retrain
    on everything labelled); the candidate is still compared with the current version.
    `train_fn`: how the candidate is trained; default in this process (`cals simulate`). The trainer
    passes a `cals.training.train_process.TrainProcess`, so a crash in training fails only its run.
    `pool`: the pool set trained on beside `train_root` (`cals.training.pool_set`); the candidate and
    the current version are compared on `val_root` alone, human labels only.
    `int8`: make the candidate's int8 model and check it on `val_root` (cals.model.quantize) before
    the gate, which then judges the model that will be served (the trainer); `cals simulate`, which
    measures which frames to label, skips it.
    """
    train = train_fn or train_in_process
    report = on_progress or (lambda phase, info: None)
    current = registry.current()
    report("training", {})
    start = init or current
    candidate = train(train_root, registry, config=None if start else config, iters=iters, batch_size=batch_size,
                      init=start.id if start else None, work_dir=work_dir,
                      on_progress=lambda state: report("training", state), pool=pool,
                      int8_test=val_root if int8 else None)
    report("evaluating", {"version": candidate.id})
    decision, cand_metrics, cur_metrics = evaluate_and_decide(
        registry, candidate, current, val_root, margin=margin, metric=metric, confidence=confidence)
    registry.update_meta(candidate.id, metrics=cand_metrics or {}, promotion={
        "promoted": decision.promote, "reason": decision.reason, "compared_with": current.id if current else None,
        "metric": metric, "margin": margin, "confidence": confidence, "candidate": decision.candidate,
        "current": decision.current})
    if decision.promote:
        report("promoting", {"version": candidate.id})
        registry.promote(candidate.id, reason=decision.reason)
    else:
        log.info("kept %s unpromoted: %s", candidate.id, decision.reason)
    return RoundOutcome(registry.get(candidate.id), decision, cand_metrics, cur_metrics,
                        current.id if current else None)


def evaluate_and_decide(registry: Registry, candidate: Version, current: Version | None,
                        val_root: str | os.PathLike, *, margin: float = DEFAULT_MARGIN,
                        metric: str = DEFAULT_METRIC, confidence: float = DEFAULT_CONFIDENCE
                        ) -> tuple[Decision, dict | None, dict | None]:
    """Score both versions on `val_root` (None when it has no labelled person) and decide; the
    reports come back without the per-person OKS the decision used."""
    cand_metrics = evaluate_version(candidate, val_root)
    cur_metrics = evaluate_version(current, val_root) if current is not None else None
    cur_doc = None if current is None else (cur_metrics or {})
    decision = decide(cand_metrics or {}, cur_doc, margin=margin, metric=metric, confidence=confidence)
    return decision, without_person_oks(cand_metrics), without_person_oks(cur_metrics)


def evaluate_version(version: Version, val_root: str | os.PathLike) -> dict | None:
    """The metrics document of `version` on `val_root`, or None for an empty split."""
    from cals.model.evaluation import evaluate_predictor
    from cals.model.predict import Predictor

    path = os.path.join(val_root, ANNOTATIONS)
    if not os.path.isfile(path) or not read_json(path)["annotations"]:
        return None
    return evaluate_predictor(Predictor(version.path, version_id=version.id), val_root, progress=False,
                              per_person=True)
