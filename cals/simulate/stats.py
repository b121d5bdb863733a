"""How sure a strategy's advantage over random is: paired differences and bootstrap intervals over seeds.

Every strategy starts each seed from the same round 0 as random, so a seed is one paired trial. The
intervals resample seeds (not rounds, which are not independent within a seed); with few seeds they
are wide, and the verdict says so rather than reporting one lucky draw.
"""
from __future__ import annotations

from typing import Any

import numpy as np

BOOTSTRAP = 2000
LEVEL = 0.95
MIN_SEEDS = 3  # with fewer, resampling seeds cannot show how much they vary


def by_seed(rows: list[dict], strategy: str) -> dict[int, dict[int, float]]:
    """seed → labelled count → spine AP."""
    out: dict[int, dict[int, float]] = {}
    for r in rows:
        if r["strategy"] == strategy:
            out.setdefault(r["seed"], {})[r["labelled"]] = r["spine_AP"] or 0.0
    return out


def labels_to_reach(curve: dict[int, float], target: float) -> float | None:
    """The labels at which a (mean) curve first reaches `target`, linear between measured rounds
    (a curve that crosses the target half-way between 60 and 80 labels needs 70, not 80); None when
    it never does. A curve that starts above the target needs its first count."""
    points = sorted(curve.items())
    for i, (n, ap) in enumerate(points):
        if ap >= target:
            if i == 0:
                return float(n)
            n0, ap0 = points[i - 1]
            return n0 + (target - ap0) / (ap - ap0) * (n - n0)
    return None


def interpolate(curve: dict[int, float], at: float) -> float:
    """A curve's value at `at` labels, linear between measured counts (cumulative effort, say)."""
    xs = sorted(curve)
    return float(np.interp(at, xs, [curve[x] for x in xs]))


def compare(rows: list[dict], strategy: str, budget: int, *, seed: int = 0,
            reference: str = "random") -> dict[str, Any] | None:
    """Paired AP difference from `reference` at the full budget and the label saving (the labels to
    reach the reference's full-budget AP), each with a bootstrap interval."""
    mine, ref = by_seed(rows, strategy), by_seed(rows, reference)
    seeds = sorted(s for s in mine if s in ref and budget in mine[s] and budget in ref[s])
    if not seeds or strategy == reference:
        return None
    diffs = np.array([mine[s][budget] - ref[s][budget] for s in seeds])
    rng = np.random.default_rng(seed)
    picks = [rng.choice(seeds, size=len(seeds)) for _ in range(BOOTSTRAP)]

    def saving(sample) -> float:
        target = float(np.mean([ref[s][budget] for s in sample]))
        counts = sorted({n for s in sample for n in mine[s]})
        curve = {n: float(np.mean([mine[s].get(n, 0.0) for s in sample])) for n in counts}
        needed = labels_to_reach(curve, target)
        return (1 - needed / budget) if needed is not None else -np.inf  # not reached: no saving

    index = {s: i for i, s in enumerate(seeds)}
    return {
        "by_labels": by_labels(mine, ref, seeds, seed=seed),
        "seeds": len(seeds),
        "ap_difference": round(float(diffs.mean()), 4),
        "ap_difference_interval": _interval([diffs[[index[s] for s in p]].mean() for p in picks]),
        "saving": _finite(saving(seeds)),
        "saving_interval": _interval([saving(p) for p in picks]),
    }


def by_labels(mine: dict[int, dict[int, float]], ref: dict[int, dict[int, float]], seeds: list[int], *,
              seed: int = 0) -> dict[int, dict[str, Any]]:
    """Labelled count → the paired spine-AP difference from random and its bootstrap interval: where
    on the way a strategy leads or lags (a cold-start lead can vanish by the full budget)."""
    counts = sorted(set.intersection(*(set(mine[s]) & set(ref[s]) for s in seeds)))
    out = {}
    for n in counts:
        diffs = [mine[s][n] - ref[s][n] for s in seeds]
        out[n] = {"difference": round(float(np.mean(diffs)), 4),
                  "interval": [round(v, 4) for v in mean_interval(diffs, seed=seed)]}
    return out


def mean_interval(values: list[float], *, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of the mean over seeds (the plot's band); one value is its own interval."""
    arr = np.asarray(values, dtype=float)
    if len(arr) < 2:
        return float(arr.mean()), float(arr.mean())
    means = np.random.default_rng(seed).choice(arr, size=(BOOTSTRAP, len(arr))).mean(axis=1)
    tail = (1 - LEVEL) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def verdict(name: str, result: dict[str, Any] | None, reference: str = "random") -> str:
    """One line a reader can act on; 'no saving beyond noise' when the interval holds zero."""
    if result is None:
        return f"{name}: not compared ({reference} or an unfinished budget)"
    if result["seeds"] < MIN_SEEDS:
        return (f"{name}: no verdict from {result['seeds']} seed(s); {MIN_SEEDS} or more are needed to tell a "
                f"saving from noise (spine AP {result['ap_difference']:+.3f} vs {reference} at the full budget)")
    lo, hi = result["ap_difference_interval"]
    span = f"spine AP {result['ap_difference']:+.3f} vs {reference} at the full budget ({LEVEL:.0%} CI {lo:+.3f} " \
           f"to {hi:+.3f}, {result['seeds']} seed(s))"
    slo, shi = result["saving_interval"]
    if result["saving"] is None and shi is None:
        span += f"; no label saving: it never reaches {reference}'s full-budget spine AP"
    else:
        span += f"; label saving {_percent(result['saving'])} (CI {_percent(slo)} to {_percent(shi)})"
    if lo > 0:
        return f"{name}: better than {reference} beyond noise: {span}"
    if hi < 0:
        return f"{name}: worse than {reference} beyond noise: {span}"
    return f"{name}: no saving beyond noise: {span}"


def _interval(values: list[float]) -> list[float | None]:
    arr = np.array(values, dtype=float)
    tail = (1 - LEVEL) / 2 * 100
    with np.errstate(invalid="ignore"):  # -inf (target not reached) sorts first, as it should
        return [_finite(float(np.percentile(arr, tail))), _finite(float(np.percentile(arr, 100 - tail)))]


def _percent(value: float | None) -> str:
    return "none (not reached)" if value is None else f"{value:.0%}"


def _finite(value: float) -> float | None:
    """JSON has no infinity: a saving that was not reached is None."""
    return round(value, 4) if np.isfinite(value) else None

