"""One simulated labelling campaign (one strategy, one seed): rounds of score → pick → reveal →
fine-tune → promote-or-keep → test, with per-round state saved so an interrupted run resumes.

Scoring, ranking and pre-annotations are the sampler's (`Scorer`, `rank`, `round_coco`), fine-tuning
and promotion the trainer's (`fine_tune_round`); the simulated annotator only reveals ground truth.
A round loads each model version once (`Campaign.predictor`) and scores through a per-seed score cache:
strategies share round 0's model, and a round that kept its model rescores nothing.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cals.data.coco import annotations_by_name, load_dataset
from cals.durable import write_json_atomic
from cals.model.evaluation import evaluate_predictor
from cals.model.predict import Predictor
from cals.registry import Registry
from cals.sampling.cache import ScoreCache
from cals.sampling.inputs import StrategyOptions, build_strategy, labelled_features
from cals.data.pool import LocalPool
from cals.sampling.ranking import rank
from cals.sampling.round_coco import round_coco
from cals.sampling.scoring import Scorer, strategy_needs
from cals.schema import Schema
from cals.simulate import data
from cals.simulate.config import SimulationConfig, split_campaign
from cals.training.effort import check_rule_figures, correction_effort, placed_within
from cals.training.fine_tune import fine_tune_round
from cals.training.labelled_set import split_for_new
from cals.training.pool_set import PoolTraining, build_pool_set
from cals.training.train_process import PoolData

log = logging.getLogger(__name__)
STATE = "state.json"
CHECK_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # CALS_CHECK_BELOW values each round is measured at


@dataclass
class Campaign:
    """Where one (strategy, seed) campaign lives and what it reads."""
    cfg: SimulationConfig
    schema: Schema
    strategy: str
    seed: int
    folder: Path
    pool: Path  # full labels: the annotator's answers
    pool_view: Path  # body-only: what the sampler scores
    test: Path
    _models: dict[str, Predictor] = field(default_factory=dict, repr=False)

    @property
    def registry(self) -> Registry:
        return Registry(self.folder / "registry")

    @cached_property
    def cache(self) -> ScoreCache:
        """Scores and predictions per (frame, version), shared by the seed's campaigns (same round 0)."""
        return ScoreCache(self.folder.parent / "scores.sqlite")

    @property
    def spec(self) -> str:
        """The sampler's strategy spec (the campaign name without its "@pool..." part)."""
        return split_campaign(self.strategy)[0]

    @property
    def pool_training(self) -> PoolTraining | None:
        return self.cfg.pool_training(self.strategy)

    def predictor(self, version_id: str) -> Predictor:
        """The version's model, loaded once; the two most recent stay loaded (current and previous)."""
        if version_id not in self._models:
            self._models[version_id] = Predictor.from_registry(self.registry, version_id)
            for old in list(self._models)[:-2]:
                del self._models[old]
        return self._models[version_id]

    def load_state(self) -> dict[str, Any]:
        path = self.folder / STATE
        return json.loads(path.read_text()) if path.is_file() else {"labelled": [], "rounds": []}

    def save_state(self, state: dict[str, Any]) -> None:
        write_json_atomic(self.folder / STATE, state, indent=1)


def run_round(c: Campaign, state: dict[str, Any], picked: list[str], annotator: dict[str, Any]
              ) -> dict[str, Any]:
    """Reveal `picked`, split them as the trainer's labelled set does, fine-tune and decide as the
    trainer does, then measure the served model and the candidate on the test set."""
    start = time.perf_counter()
    labelled = state["labelled"] + picked
    val = split_val(state.get("val", []), len(state["labelled"]), picked, c.cfg.val_fraction)
    held_out = set(val)
    train = [n for n in labelled if n not in held_out]
    train_root = data.revealed(c.pool, train, c.folder / "labelled" / "train", c.schema)
    val_root = data.revealed(c.pool, val, c.folder / "labelled" / "val", c.schema)
    registry = c.registry
    init = registry.list()[0] if c.cfg.train_from == "base" and registry.current() else None
    pool_set, pool_data = pool_round(c, labelled)
    outcome = fine_tune_round(train_root, val_root, registry, config=c.cfg.model, iters=c.cfg.round_iters,
                              batch_size=c.cfg.batch_size, margin=c.cfg.margin, metric=c.cfg.metric,
                              confidence=c.cfg.confidence, init=init, pool=pool_data,
                              int8=False)  # label efficiency is fp32's; int8 costs a few seconds a round
    served = registry.current()
    metrics = evaluate_predictor(c.predictor(served.id), c.test, progress=False)
    candidate = metrics if outcome.promoted else \
        evaluate_predictor(Predictor(outcome.version.path, version_id=outcome.version.id), c.test, progress=False)
    row = {"strategy": c.strategy, "seed": c.seed, "round": len(state["rounds"]), "labelled": len(labelled),
           **test_figures(metrics), "candidate": test_figures(candidate), **annotator,
           "version": served.id, "promoted": outcome.promoted, "reason": outcome.decision.reason,
           "gate": {"val_frames": len(val), "train_frames": len(train), "metric": c.cfg.metric,
                    "candidate": outcome.decision.candidate, "current": outcome.decision.current},
           "seconds": round(time.perf_counter() - start, 1), **({"pool_set": pool_set} if pool_set else {})}
    state["labelled"] = labelled
    state["val"] = val
    state["rounds"].append(row)
    state.setdefault("picked", []).append(picked)
    c.save_state(state)
    log.info("%s seed %d round %d: %d labels, spine AP %.3f (%s)", c.strategy, c.seed, row["round"],
             row["labelled"], row["spine_AP"] or 0.0, "promoted" if outcome.promoted else "kept previous")
    return row


def pool_round(c: Campaign, labelled: list[str]) -> tuple[dict[str, Any] | None, PoolData | None]:
    """The campaign's pool set for this round, as the trainer builds it: the pool's body labels and
    the served model's confident spine points on every frame not labelled yet. Predictions come from
    the seed's score cache; with random order nothing scored the pool, so the served version predicts
    it here first (what the sampler does after a promotion), timed. The report adds what only a
    simulation knows: how many pseudo spine points lie within the effort tolerance of the truth."""
    training = c.pool_training
    if training is None or not training.enabled:
        return None, None
    start = time.perf_counter()
    served = c.registry.current()
    pool = LocalPool(c.pool_view, c.schema)
    predicted = 0
    if training.pseudo:
        predicted = Scorer(c.predictor(served.id), cache=c.cache).predict(pool, exclude=set(labelled), progress=False)
    predicting = time.perf_counter() - start
    root = c.folder / "pool-set"
    report = build_pool_set(pool, root, c.schema, training, exclude=labelled,
                            people=lambda item: c.cache.people(served.id, item.key))
    report.update(version=served.id, predicted=predicted, seconds_predicting=round(predicting, 1),
                  seconds=round(time.perf_counter() - start, 1))
    if training.pseudo:
        report["pseudo_accuracy"] = pseudo_accuracy(c, root)
    return report, PoolData(root, training.human_share) if report["people"] else None


def pseudo_accuracy(c: Campaign, root: Path) -> dict[str, Any]:
    """Of the pool set's pseudo spine points, how many lie within the effort tolerance (OKS term 0.5)
    of the hidden truth: the pseudo-labels' precision, which a real pool cannot measure."""
    pool_set = load_dataset(root, c.schema).coco
    names = [im["file_name"] for im in pool_set["images"]]
    truth = load_dataset(data.revealed(c.pool, names, c.folder / "pool-truth", c.schema), c.schema).coco
    truth = annotations_by_name(truth)
    return placed_within(annotations_by_name(pool_set), truth, c.schema, group="spine")


def split_val(val: list[str], before: int, picked: list[str], fraction: float) -> list[str]:
    """The validation frames after `picked` arrive in order: the trainer's rule (`split_for_new`)."""
    val = list(val)
    for i, name in enumerate(picked):
        if split_for_new(len(val), before + i, fraction) == "val":
            val.append(name)
    return val


def test_figures(metrics: dict) -> dict[str, Any]:
    """What a round reports of a model on the test set: spine, body and overall AP, spine AP per family."""
    return {"spine_AP": metrics["groups"]["spine"]["AP"], "body_AP": metrics["groups"]["body"]["AP"],
            "AP": metrics["overall"]["AP"],
            "families": {f: m.get("spine_AP") for f, m in metrics.get("families", {}).items()}}


def pick(c: Campaign, state: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The next batch as the sampler would rank it, and the annotator's work on its pre-annotations."""
    current = c.registry.current()
    strategy = build_strategy(c.spec, c.schema, current, options=StrategyOptions(seed=c.seed))
    previous = None
    if "previous" in strategy_needs([strategy]):
        previous_id = c.registry.previous(current.id)
        previous = c.predictor(previous_id) if previous_id else None
    pool = LocalPool(c.pool_view, c.schema)
    labelled = set(state["labelled"])
    scorer = Scorer(c.predictor(current.id), previous=previous, cache=c.cache)
    table = scorer.score(pool, [strategy], exclude=labelled, progress=False)
    ranked = rank(table, strategy, k=c.cfg.batch, exclude=labelled,
                  labelled=labelled_features(scorer, strategy, current))
    picked = [r.name for r in ranked[:c.cfg.batch]]
    return picked, annotator_work(c, scorer, pool, picked)


def annotator_work(c: Campaign, scorer: Scorer, pool: LocalPool, names: list[str]) -> dict[str, Any]:
    """What the annotator moves in the round's pre-annotations (as the sampler uploads them), against
    the picked frames' ground truth, and how well the points to check point at it, per check threshold:
    {"effort_spine": ..., "checks": {group: [rows]}}."""
    chosen = set(names)
    frames = [scorer.frame_record(item, pool.image_bytes(item)) for item in pool.items() if item.name in chosen]
    pre = annotations_by_name(round_coco(frames, c.schema))
    truth = annotations_by_name(load_dataset(data.revealed(c.pool, names, c.folder / "picked", c.schema),
                                             c.schema).coco)
    return {"effort_spine": correction_effort(pre, truth, c.schema)["spine"],
            "checks": check_rule_figures(pre, truth, c.schema, CHECK_GRID)}
