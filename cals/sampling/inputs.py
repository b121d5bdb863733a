"""A strategy with everything it needs besides the pool, gathered one way for the sampler service
and the simulation alike: the labelled poses (the pose strategy's shape space), the features of
the labelled images (where core-set, typiclust and tcm start) and the uncertainty strategy of
hybrid, typical_uncertainty and tcm. Strategies are named by specs ("tcm:switch=80").

Both find the labelled data the same way: a configured COCO file, else the training data of the
current version (its meta's `train_data.path`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cals.data.coco import read_json
from cals.errors import CalsError
from cals.registry import Version
from cals.sampling.strategies import (DEFAULT_GROUP, DEFAULT_HYBRID_BASE, UNCERTAINTY_POOLS, CoreSet, PoolStrategy,
                                      ShapeSpace, Strategy, StrategySpec, create, parse_spec, uncertainty_spec)


@dataclass(frozen=True)
class StrategyOptions:
    """The sampler's CALS_SAMPLER_* choices; the simulation uses the same defaults."""

    reduce: str = "max"  # people → image
    group: str | None = DEFAULT_GROUP  # points scored; None or "all": every point
    uncertainty: str = DEFAULT_HYBRID_BASE  # spec of the uncertainty of hybrid, typical_uncertainty and tcm
    seed: int | None = None  # random's, and a random share's unless the spec sets random_seed


def build_strategy(name: str | StrategySpec, schema, current: Version | None, *,
                   options: StrategyOptions = StrategyOptions(), labelled: str | Path | None = None
                   ) -> Strategy | PoolStrategy:
    """The strategy of spec `name` ("tcm", "hybrid:factor=3"); `labelled` is a COCO file of labelled
    poses (default: the current version's). The spec's options win over `options`; an uncertainty
    pool's `uncertainty` (spec option, else options.uncertainty) is built here the same way."""
    spec = parse_spec(name)
    kwargs = spec.kwargs
    group = None if options.group == "all" else options.group
    if group == DEFAULT_GROUP and current is not None and current.meta.get("spine_trained") is False:
        # an initial model's spine points are the geometric prior, all with one constant score: every
        # frame would tie and the round would be the pool's first frames in file order. Its body
        # points are the model's own, so the uncertainty of the body ranks the first round.
        group = "body" if "body" in schema.groups else None
    if spec.name in UNCERTAINTY_POOLS:
        inner = kwargs.pop("uncertainty", options.uncertainty)
        if "reduce" in kwargs:
            options = replace(options, reduce=str(kwargs.pop("reduce")))
        inner_spec = uncertainty_spec(spec.name, inner)  # refused before its inputs are built
        kwargs["uncertainty"] = build_strategy(inner_spec, schema, current, options=options, labelled=labelled)
    if spec.name == "pose":
        kwargs["space"] = shape_space(schema, labelled_poses(current, labelled))
    if options.seed is not None:
        if spec.name == "random":
            kwargs.setdefault("seed", options.seed)
        if "random_share" in kwargs:
            kwargs.setdefault("random_seed", options.seed)
        if "stochastic" in kwargs:
            kwargs.setdefault("stochastic_seed", options.seed)
    kwargs.setdefault("reduce", options.reduce)
    return create(spec.name, schema=schema, group=group, **kwargs)


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
    from cals.data.pool import LocalPool

    data = training_folder(current)
    if not isinstance(strategy, PoolStrategy) or not data or not (data / "annotations.json").is_file():
        return None
    table = scorer.score(LocalPool(data, scorer.predictor.schema), [CoreSet()], progress=progress)
    return table.feature_matrix()
