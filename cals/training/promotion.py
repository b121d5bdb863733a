"""When a freshly trained version replaces the serving one: the rule the trainer and `cals simulate` share.

Both versions are scored on the same validation set (it only grows, so a stored metric of the
current version may be stale); the candidate is promoted unless its AP is worse by more than
`margin`. A missing AP (no labelled validation point) never blocks the first model.
"""
from __future__ import annotations

from dataclasses import dataclass

from cals.settings import default

# the documented defaults of CALS_PROMOTE_MARGIN / CALS_PROMOTE_METRIC, which the trainer's settings read
DEFAULT_MARGIN: float = default("CALS_PROMOTE_MARGIN")
DEFAULT_METRIC: str = default("CALS_PROMOTE_METRIC")


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
           metric: str = DEFAULT_METRIC) -> Decision:
    """Promote when there is no current model or the candidate is at most `margin` worse."""
    new, old = metric_value(candidate, metric), metric_value(current, metric)
    if current is None:
        return Decision(True, "no current model", new, None)
    if new is None:
        return Decision(False, f"candidate has no {metric} (empty validation set?)", new, old)
    if old is None or new >= old - margin:
        return Decision(True, f"{metric} {new:.4f} vs current {_fmt(old)} (margin {margin})", new, old)
    return Decision(False, f"{metric} {new:.4f} is worse than current {old:.4f} by more than "
                           f"{margin}", new, old)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
