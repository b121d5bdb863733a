"""When a freshly trained version replaces the serving one: the rule the trainer and `cals simulate` share.

Both versions are scored on the same validation set (it only grows, so a stored metric of the
current version may be stale). The candidate is promoted unless it is worse, and worse means two
things at once: its AP is below the current's by more than `margin`, and its people are matched
worse beyond noise. A validation split of a few dozen labelled frames moves AP by several points
from one model to an equally good one; a rule that kept the old model on any drop would keep it on
a coin flip (in `cals simulate`, it kept models that were better on the 150-frame test set). So the
paired per-person OKS differences (candidate − current, the same people) are resampled, and the
candidate is kept back only when their mean is below zero with `confidence` (one-sided bootstrap).
`confidence` 0 is the plain AP rule. A missing AP (no labelled validation point) never blocks the
first model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cals.settings import default

# the documented defaults of CALS_PROMOTE_*, which the trainer's settings read
DEFAULT_MARGIN: float = default("CALS_PROMOTE_MARGIN")
DEFAULT_METRIC: str = default("CALS_PROMOTE_METRIC")
DEFAULT_CONFIDENCE: float = default("CALS_PROMOTE_CONFIDENCE")
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    candidate: float | None
    current: float | None


def metric_value(metrics: dict | None, path: str = DEFAULT_METRIC) -> float | None:
    """A value of an evaluation report by dotted path, e.g. "overall.AP" or "groups.spine.AP"."""
    node = metrics
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) else None


def decide(candidate: dict, current: dict | None, *, margin: float = DEFAULT_MARGIN,
           metric: str = DEFAULT_METRIC, confidence: float = DEFAULT_CONFIDENCE) -> Decision:
    """Promote when there is no current model, or the candidate is not worse (see the module)."""
    new, old = metric_value(candidate, metric), metric_value(current, metric)
    if current is None:
        return Decision(True, "no current model", new, None)
    if new is None:
        return Decision(False, f"candidate has no {metric} (empty validation set?)", new, old)
    if old is None or new >= old - margin:
        return Decision(True, f"{metric} {new:.4f} vs current {_fmt(old)} (margin {margin})", new, old)
    worse = f"{metric} {new:.4f} is worse than current {old:.4f} by more than {margin}"
    if confidence <= 0:
        return Decision(False, worse, new, old)
    diffs = paired_oks_differences(candidate, current, metric)
    if diffs is None:
        return Decision(False, f"{worse} (no per-person OKS to test it against noise)", new, old)
    upper = _upper_bound(diffs, confidence)
    if upper >= 0:
        return Decision(True, f"{worse}, but not beyond noise: per-person OKS {diffs.mean():+.4f} "
                              f"(upper {confidence:.0%} bound {upper:+.4f}, {len(diffs)} people)", new, old)
    return Decision(False, f"{worse}, and beyond noise: per-person OKS {diffs.mean():+.4f} (upper {confidence:.0%} "
                           f"bound {upper:+.4f}, {len(diffs)} people)", new, old)


def paired_oks_differences(candidate: dict, current: dict, metric: str) -> np.ndarray | None:
    """Candidate − current OKS of the same validation people, over the metric's points
    ("overall.AP": all, "groups.spine.AP": the spine's); None when either report lacks them."""
    parts = metric.split(".")
    scope = parts[1] if parts[0] == "groups" and len(parts) > 2 else "overall"
    a, b = (candidate.get("oks") or {}).get(scope), (current.get("oks") or {}).get(scope)
    if not a or not b:
        return None
    people = sorted(a.keys() & b.keys())
    return np.array([a[p] - b[p] for p in people]) if people else None


def without_person_oks(metrics: dict | None) -> dict | None:
    """The report without its per-person figures (they are for the decision, not for meta.json)."""
    return None if metrics is None else {k: v for k, v in metrics.items() if k != "oks"}


def _upper_bound(diffs: np.ndarray, confidence: float) -> float:
    """One-sided upper bound of the mean difference (bootstrap over people, fixed seed: reproducible)."""
    if len(diffs) < 2:
        return float(diffs.mean()) if len(diffs) else 0.0
    means = np.random.default_rng(0).choice(diffs, size=(BOOTSTRAP, len(diffs))).mean(axis=1)
    return float(np.quantile(means, confidence))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
