"""A strategy with everything it needs besides the pool, gathered one way for the sampler service
and the simulation alike: the labelled poses (the pose strategy's shape space), the features of
the labelled images (where core-set and hybrid start) and the hybrid's shortlist strategy.

Both find the labelled data the same way: a configured COCO file, else the training data of the
current version (its meta's `train_data.path`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cals.data.coco import read_json
from cals.errors import CalsError
from cals.registry import Version
from cals.sampling.strategies import DEFAULT_GROUP, DEFAULT_HYBRID_BASE, CoreSet, PoolStrategy, ShapeSpace, Strategy, create


@dataclass(frozen=True)
class StrategyOptions:
    """The sampler's CALS_SAMPLER_* choices; the simulation uses the same defaults."""

    reduce: str = "max"  # people → image
    group: str | None = DEFAULT_GROUP  # points scored; None or "all": every point
    uncertainty: str = DEFAULT_HYBRID_BASE  # hybrid's shortlist strategy
    seed: int | None = None  # random's


def build_strategy(name: str, schema, current: Version | None, *, options: StrategyOptions = StrategyOptions(),
                   labelled: str | Path | None = None) -> Strategy | PoolStrategy:
    """The strategy `name`; `labelled` is a COCO file of labelled poses (default: the current version's)."""
    group = None if options.group == "all" else options.group
    if group == DEFAULT_GROUP and current is not None and current.meta.get("spine_trained") is False:
        # an initial model's spine points are the geometric prior, all with one constant score: every
        # frame would tie and the round would be the pool's first frames in file order. Its body
        # points are the model's own, so the uncertainty of the body ranks the first round.
        group = "body" if "body" in schema.groups else None
    if name == "hybrid":
        if options.uncertainty in ("coreset", "hybrid"):
            raise CalsError(f"hybrid shortlists with a per-image strategy, not {options.uncertainty!r}")
        base = build_strategy(options.uncertainty, schema, current, options=options, labelled=labelled)
        return create("hybrid", schema=schema, group=group, uncertainty=base)
    extra: dict = {}
    if name == "pose":
        extra["space"] = shape_space(schema, labelled_poses(current, labelled))
    if name == "random" and options.seed is not None:
        extra["seed"] = options.seed
    return create(name, schema=schema, group=group, reduce=options.reduce, **extra)


def labelled_poses(current: Version | None, configured: str | Path | None = None) -> Path | None:
    """The COCO file of labelled people: `configured`, else the current version's training data."""
    if configured:
        return Path(configured)
    data = training_folder(current)
    return data / "annotations.json" if data else None


def training_folder(current: Version | None) -> Path | None:
    """The COCO folder the current version was trained on (None for an initial model)."""
    data = (current.meta.get("train_data") or {}).get("path") if current else None
    return Path(data) if data else None


def shape_space(schema, path: Path | None) -> ShapeSpace:
    """Where plausible poses lie, from the labelled people (the body points while few have a spine)."""
    if path is None or not path.is_file():
        raise CalsError("the pose strategy needs the labelled poses: set CALS_SAMPLER_LABELLED to a COCO file")
    coco = read_json(path)
    try:
        return ShapeSpace.from_coco(coco, range(schema.num_keypoints))
    except CalsError:  # few fully labelled people yet: use the body points
        return ShapeSpace.from_coco(coco, schema.groups["body"])


def labelled_features(scorer, strategy: Strategy | PoolStrategy, current: Version | None, *,
                      progress: bool = False) -> np.ndarray | None:
    """Features of the current version's training images (cached): where core-set starts from."""
    from cals.sampling.pool import LocalPool

    data = training_folder(current)
    if not isinstance(strategy, PoolStrategy) or not data or not (data / "annotations.json").is_file():
        return None
    table = scorer.score(LocalPool(data, scorer.predictor.schema), [CoreSet()], progress=progress)
    return table.feature_matrix()
