"""Uncertainty, diversity and typicality strategies: which unlabelled frames to label first (higher = first).

    from cals.sampling.strategies import create
    strategy = create("entropy", schema=schema, group="spine", reduce="max")
    strategy.score(Observation(key, people))                 # per-image strategies
    create("tcm:switch=80,random_share=0.25", schema=schema).pool_scores(...)   # pool strategies

A strategy is named by a spec, `name` or `name:option=value,...` (see `spec`); OPTIONS lists what
each takes. Every strategy also takes the options that reorder its ranking (SHARE_OPTIONS), applied
in this order: `min_box`/`small_share` (`SmallCap`), `stochastic`/`stochastic_seed` (`Stochastic`,
softrank draws), `random_share`/`random_seed` (`RandomShare`).
A new strategy is a subclass of `Strategy` (or `PoolStrategy`) added to `STRATEGIES` and `OPTIONS`;
the pool scorer and the sampler service look strategies up by spec only.
"""
from __future__ import annotations

from typing import Any

from cals.errors import CalsError
from cals.settings import PREFIX, SettingsError
from cals.sampling.strategies.base import (NEEDS, REDUCTIONS, Observation, PoolStrategy, Strategy, UncertaintyPool,
                                           box_scale, resolve_reduce)
from cals.sampling.strategies.disagreement import CommitteeDisagreement, FlipDisagreement
from cals.sampling.strategies.diversity import CoreSet, Hybrid, cluster_picks, k_center_greedy
from cals.sampling.strategies.random_share import RandomShare
from cals.sampling.strategies.shape import PoseImplausibility, ShapeSpace
from cals.sampling.strategies.small_cap import LargestPerson, SmallCap
from cals.sampling.strategies.spec import StrategySpec, option_float, option_int, read_spec
from cals.sampling.strategies.stochastic import Stochastic
from cals.sampling.strategies.typicality import TCM, TypiClust, TypicalUncertainty, kmeans, typicality
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
    "typiclust": TypiClust,
    "typical_uncertainty": TypicalUncertainty,
    "tcm": TCM,
}
_CLUSTERS = {"seed", "max_clusters", "min_cluster", "neighbours"}
# The options a spec may give each strategy (pose's shape space is an input, built by build_strategy).
OPTIONS: dict[str, frozenset[str]] = {name: frozenset(opts) for name, opts in {
    "random": {"seed"},
    "least_confidence": {"reduce"},
    "entropy": {"reduce"},
    "multipeak_entropy": {"reduce", "min_peak"},
    "flip": {"reduce"},
    "committee": {"reduce"},
    "pose": {"reduce"},
    "coreset": set(),
    "hybrid": {"uncertainty", "reduce", "factor"},
    "typiclust": _CLUSTERS,
    "typical_uncertainty": {"uncertainty", "reduce", "drop", "neighbours"},
    "tcm": {"uncertainty", "reduce", "switch", "drop"} | _CLUSTERS,
}.items()}
# every strategy: see SmallCap, Stochastic, RandomShare
SHARE_OPTIONS = frozenset({"min_box", "small_share", "stochastic", "stochastic_seed", "random_share", "random_seed"})
UNCERTAINTY_POOLS = frozenset({"hybrid", "typical_uncertainty", "tcm"})  # rank by an `uncertainty` strategy
DEFAULT_GROUP = "spine"
DEFAULT_HYBRID_BASE = "entropy"  # the `uncertainty` of hybrid, typical_uncertainty and tcm


def create(name: str | StrategySpec, *, schema=None, group: str | None = DEFAULT_GROUP, **options: Any
           ) -> Strategy | PoolStrategy:
    """A strategy by spec ("tcm", "tcm:switch=80"); `group` (a schema point group, None = all points)
    picks the points scored.

    Keyword options add to the spec's (the spec wins): those in OPTIONS, `reduce` (ignored where
    nothing is reduced), pose's `space`, and `random_share`/`random_seed` for any strategy. The
    uncertainty pools take `uncertainty` as a spec (default 'entropy', made with `reduce`) or a
    Strategy. Unknown names/options raise CalsError.
    """
    spec = parse_spec(name)
    options = {**options, **spec.kwargs}
    wrap = {key: options.pop(key) for key in SHARE_OPTIONS if key in options}
    return _wrapped(spec.name, _create(spec.name, schema, group, options), wrap)


def _wrapped(name: str, strategy: Strategy | PoolStrategy, wrap: dict) -> Strategy | PoolStrategy:
    """`strategy` inside the reordering wrappers its options ask for (none at their defaults)."""
    min_box = option_float(name, "min_box", wrap.get("min_box", 0.0), 0.0, 1e5)
    if min_box > 0:
        strategy = SmallCap(strategy, min_box=min_box, share=wrap.get("small_share", 0.0))
    elif "small_share" in wrap:
        raise CalsError(f"strategy {name!r}: small_share needs min_box (the size, px, below which a frame is small)")
    beta = option_float(name, "stochastic", wrap.get("stochastic", 0.0), 0.0, 1e6)
    if beta > 0:
        strategy = Stochastic(strategy, beta=beta, seed=wrap.get("stochastic_seed", 0))
    share = option_float(name, "random_share", wrap.get("random_share", 0.0), 0.0, 1.0)
    if share > 0:
        strategy = RandomShare(strategy, share=share, seed=wrap.get("random_seed", 0))
    return strategy


def _create(name: str, schema, group: str | None, options: dict) -> Strategy | PoolStrategy:
    cls = STRATEGIES[name]
    allowed = set(OPTIONS[name])
    if name in UNCERTAINTY_POOLS:
        base = options.pop("uncertainty", DEFAULT_HYBRID_BASE)
        reduce = options.pop("reduce", "max")
        if isinstance(base, (str, StrategySpec)):
            base = create(uncertainty_spec(name, base), schema=schema, group=group, reduce=reduce)
        return cls(base, **_checked(name, options, allowed - {"uncertainty", "reduce"}))
    if issubclass(cls, PoolStrategy):  # coreset, typiclust: no per-image scores to reduce
        options.pop("reduce", None)
        return cls(**_checked(name, options, allowed))
    if cls is Random:
        return cls(**_checked(name, options, allowed | {"reduce"}))
    if cls is PoseImplausibility:  # scores whole poses: no point group
        return cls(**_checked(name, options, allowed | {"space"}))
    return cls(**_checked(name, options, allowed), points=_points(schema, group))


def uncertainty_spec(owner: str, spec: str | StrategySpec) -> StrategySpec:
    """`spec` parsed; CalsError when it is no per-image strategy (the pool strategy `owner` ranks by it)."""
    parsed = parse_spec(spec)
    if issubclass(STRATEGIES[parsed.name], PoolStrategy) or set(parsed.kwargs) & SHARE_OPTIONS:
        raise CalsError(f"{owner}'s uncertainty must be a per-image strategy, not {str(parsed)!r}")
    return parsed


def parse_spec(text: str | StrategySpec) -> StrategySpec:
    """The spec in `text`, its name and option names checked against the strategies' tables.

    Raises CalsError naming the malformed part, the unknown strategy or the unknown option.
    """
    return read_spec(text, {name: spec_options(name) for name in STRATEGIES})


def check_settings(strategy: str, uncertainty: str) -> None:
    """CALS_SAMPLER_STRATEGY (a spec, "tcm:switch=80,random_share=0.25") and CALS_SAMPLER_UNCERTAINTY
    (a per-image strategy: what hybrid, typical_uncertainty and tcm rank by), checked when the sampler
    loads its settings. Raises SettingsError naming the variable, as cals.settings does for the others."""
    for variable, value in (("SAMPLER_STRATEGY", strategy), ("SAMPLER_UNCERTAINTY", uncertainty)):
        try:
            if value.partition(":")[0].strip() not in STRATEGIES:
                raise CalsError(f"unknown strategy; choose one of {sorted(STRATEGIES)}")
            if variable == "SAMPLER_UNCERTAINTY":
                uncertainty_spec("a pool strategy", value)
            else:
                parse_spec(value)
        except CalsError as e:
            raise SettingsError(f"{PREFIX}{variable}: {e}, got {value!r}") from None


def spec_options(name: str) -> frozenset[str]:
    """Every option a spec may give strategy `name`."""
    return OPTIONS[name] | SHARE_OPTIONS


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


def _checked(name: str, options: dict, allowed: set[str]) -> dict:
    bad = sorted(set(options) - allowed)
    if bad:
        raise CalsError(f"strategy {name!r} takes no option(s) {bad}; it takes {sorted(allowed) or 'none'}")
    return options


__all__ = ["STRATEGIES", "OPTIONS", "SHARE_OPTIONS", "UNCERTAINTY_POOLS", "NEEDS", "REDUCTIONS", "Observation",
           "Strategy", "PoolStrategy", "UncertaintyPool", "StrategySpec", "create", "parse_spec", "spec_options",
           "uncertainty_spec", "check_settings", "names", "k_center_greedy", "cluster_picks", "kmeans", "typicality",
           "ShapeSpace", "box_scale", "resolve_reduce", "Random", "LeastConfidence", "Entropy", "MultiPeakEntropy",
           "FlipDisagreement", "CommitteeDisagreement", "PoseImplausibility", "CoreSet", "Hybrid", "TypiClust",
           "TypicalUncertainty", "TCM", "RandomShare", "Stochastic", "SmallCap", "LargestPerson"]
