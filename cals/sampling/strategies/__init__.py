"""Uncertainty and diversity strategies: which unlabelled frames to label first (higher = first).

    from cals.sampling.strategies import create
    strategy = create("entropy", schema=schema, group="spine", reduce="max")
    strategy.score(Observation(key, people))            # per-image strategies
    create("hybrid", schema=schema).pool_scores(...)    # pool strategies (coreset, hybrid)

A new strategy is a subclass of `Strategy` (or `PoolStrategy`) added to `STRATEGIES`; the pool
scorer and the sampler service look strategies up by name only.
"""
from __future__ import annotations

from typing import Any

from cals.errors import CalsError
from cals.sampling.strategies.base import (NEEDS, REDUCTIONS, Observation, PoolStrategy, Strategy, box_scale,
                                  resolve_reduce)
from cals.sampling.strategies.disagreement import CommitteeDisagreement, FlipDisagreement
from cals.sampling.strategies.diversity import CoreSet, Hybrid, k_center_greedy
from cals.sampling.strategies.shape import PoseImplausibility, ShapeSpace
from cals.sampling.strategies.uncertainty import Entropy, LeastConfidence, MultiPeakEntropy, Random

STRATEGIES: dict[str, type] = {
    "random": Random,
    "least_confidence": LeastConfidence,
    "entropy": Entropy,
    "multipeak_entropy": MultiPeakEntropy,
    "flip": FlipDisagreement,
    "committee": CommitteeDisagreement,
    "pose": PoseImplausibility,
    "coreset": CoreSet,
    "hybrid": Hybrid,
}
DEFAULT_GROUP = "spine"
DEFAULT_HYBRID_BASE = "entropy"


def create(name: str, *, schema=None, group: str | None = DEFAULT_GROUP, **options: Any
           ) -> Strategy | PoolStrategy:
    """A strategy by name. `group` (a schema point group, None = all points) picks the points scored.

    Options go to the class (`reduce`, `seed`, `min_peak`, `space`, `factor`); hybrid also takes
    `uncertainty` (a name, default 'entropy', or a Strategy). Unknown names/options raise CalsError.
    """
    cls = STRATEGIES.get(name)
    if cls is None:
        raise CalsError(f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}")
    if cls is CoreSet:
        _no_options(name, options)
        return CoreSet()
    if cls is Hybrid:
        base = options.pop("uncertainty", DEFAULT_HYBRID_BASE)
        if isinstance(base, str):
            if base in ("coreset", "hybrid"):
                raise CalsError(f"hybrid shortlists with a per-image strategy, not {base!r}")
            reduce = options.pop("reduce", "max")
            base = create(base, schema=schema, group=group, reduce=reduce)
        return Hybrid(base, **_checked(cls, options, {"factor"}))
    points = _points(schema, group) if cls not in (Random, PoseImplausibility) else None
    allowed = {"reduce"} | {"random": {"seed"}, "multipeak_entropy": {"min_peak"}, "pose": {"space"}}.get(name, set())
    return cls(**_checked(cls, options, allowed), **({} if points is None else {"points": points}))


def names() -> list[str]:
    return list(STRATEGIES)


def _points(schema, group: str | None) -> list[int] | None:
    if group is None or group == "all":
        return None
    if schema is None:
        raise CalsError(f"point group {group!r} needs the schema (pass schema=...)")
    if group not in schema.groups:
        raise CalsError(f"unknown point group {group!r}; schema has {sorted(schema.groups)} or 'all'")
    return schema.groups[group]


def _checked(cls: type, options: dict, allowed: set[str]) -> dict:
    bad = sorted(set(options) - allowed)
    if bad:
        raise CalsError(f"strategy {cls.name!r} takes no option(s) {bad}; it takes {sorted(allowed) or 'none'}")
    return options


def _no_options(name: str, options: dict) -> None:
    options.pop("reduce", None)
    if options:
        raise CalsError(f"strategy {name!r} takes no options, got {sorted(options)}")


__all__ = ["STRATEGIES", "NEEDS", "REDUCTIONS", "Observation", "Strategy", "PoolStrategy", "create",
           "names", "k_center_greedy", "ShapeSpace", "box_scale", "resolve_reduce", "Random",
           "LeastConfidence", "Entropy", "MultiPeakEntropy", "FlipDisagreement", "CommitteeDisagreement",
           "PoseImplausibility", "CoreSet", "Hybrid"]
