"""Correction effort: how much of a pre-annotation people had to move — the work a model saved.

A point counts as moved when its OKS term exp(-d² / (2 s² k²)) (s² = person area, k = 2·sigma,
as in COCO's OKS) falls below `tolerance`; a point a person labelled that the pre-annotation
did not place counts as moved too. The trainer reports this per exported job, the simulated
annotator of `cals simulate` per round: one definition for both.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from cals.metrics.evaluate import keypoints_array, oks
from cals.schema import Schema
from cals.settings import default

DEFAULT_TOLERANCE: float = default("CALS_EFFORT_TOLERANCE")  # OKS term of a point: 0.5 ≈ COCO "AP50" closeness


def correction_effort(pre: Mapping[Any, Sequence[dict]], final: Mapping[Any, Sequence[dict]],
                      schema: Schema, *, tolerance: float = DEFAULT_TOLERANCE) -> dict[str, dict]:
    """Per group: labelled points, moved points, moved share and mean displacement (pixels and
    as a fraction of the person's size) over frames present in both mappings.

    Both map a frame key to COCO annotations ({"keypoints": [x, y, v] * K, "bbox", "area"?});
    final people are matched to pre-annotated ones greedily by OKS.
    """
    sigmas = np.asarray(schema.sigmas, dtype=float)
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for key in final.keys() & pre.keys():
        for gt, guess in _match(final[key], pre[key], sigmas):
            _accumulate(totals, gt, guess, sigmas, schema, tolerance)
    return {group: _summary(totals.get(group, {})) for group in schema.groups}


def placed_within(pre: Mapping[Any, Sequence[dict]], final: Mapping[Any, Sequence[dict]], schema: Schema, *,
                  group: str, tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """Of the points of `group` that `pre` placed, how many the final labels keep within `tolerance`
    (the same OKS term as effort): the precision of pseudo-labels against the truth."""
    sigmas = np.asarray(schema.sigmas, dtype=float)
    idx = schema.groups[group]
    placed = within = 0
    for key in final.keys() & pre.keys():
        for gt, guess in _match(final[key], pre[key], sigmas):
            if guess is None:
                continue
            labelled, put, moved, _ = _moved(gt, guess, sigmas, tolerance)
            judged = (labelled & put)[idx]
            placed += int(judged.sum())
            within += int((judged & ~moved[idx]).sum())
    return {"placed": placed, "within": within, "share": round(within / placed, 4) if placed else None,
            "tolerance": tolerance}


def _moved(gt: dict, guess: dict | None, sigmas: np.ndarray, tolerance: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(labelled, placed, moved, displacement) per point of one matched person."""
    g = keypoints_array(gt)
    labelled = g[:, 2] > 0
    if guess is None:
        placed, dist = np.zeros(len(g), dtype=bool), np.zeros(len(g))
    else:
        p = keypoints_array(guess)
        placed = p[:, 2] > 0
        dist = np.linalg.norm(p[:, :2] - g[:, :2], axis=1)
    term = np.exp(-dist ** 2 / (2 * _area(gt) * (2 * sigmas) ** 2))
    return labelled, placed, labelled & (~placed | (term < tolerance)), dist


def _accumulate(totals, gt: dict, guess: dict | None, sigmas: np.ndarray, schema: Schema,
                tolerance: float) -> None:
    labelled, placed, moved, dist = _moved(gt, guess, sigmas, tolerance)
    size = np.sqrt(_area(gt))
    measured = labelled & placed
    for group, idx in schema.groups.items():
        t = totals[group]
        t["points"] += labelled[idx].sum()
        t["moved"] += moved[idx].sum()
        t["measured"] += measured[idx].sum()
        t["displacement_px"] += dist[idx][measured[idx]].sum()
        t["displacement_rel"] += (dist[idx][measured[idx]] / size).sum()


def check_rule_figures(pre: Mapping[Any, Sequence[dict]], final: Mapping[Any, Sequence[dict]],
                       schema: Schema, thresholds: Sequence[float], *,
                       tolerance: float = DEFAULT_TOLERANCE) -> dict[str, list[dict]]:
    """Per group and threshold: the recall (moved points flagged) and workload (placed points flagged)
    of the rule "flag a point scoring below the threshold" (cals/cvat/point_checks.py).

    `pre` annotations carry the model's per-point "scores" (K); over the pre-annotated points of
    people matched as in `correction_effort`.
    """
    sigmas = np.asarray(schema.sigmas, dtype=float)
    # per threshold: placed, flagged, moved, caught, flagged & labelled, flagged & not labelled
    counts = {g: np.zeros((len(thresholds), 6)) for g in schema.groups}
    for key in final.keys() & pre.keys():
        for gt, guess in _match(final[key], pre[key], sigmas):
            if guess is None:
                continue
            labelled, placed, moved, _ = _moved(gt, guess, sigmas, tolerance)
            scores = np.asarray(guess["scores"], dtype=float)
            for i, t in enumerate(thresholds):
                flag = placed & (scores < t)
                for group, idx in schema.groups.items():
                    counts[group][i] += [m[idx].sum() for m in (placed, flag, moved & placed, moved & flag,
                                                                 flag & labelled, flag & ~labelled)]
    return {group: [_rule_row(t, *c) for t, c in zip(thresholds, rows)] for group, rows in counts.items()}


def _rule_row(threshold: float, placed: float, flagged: float, moved: float, caught: float,
              flagged_labelled: float, flagged_absent: float) -> dict:
    """`flagged_labelled`: flagged points a person labels (hiding them, as `outside`, would lose them)."""
    return {"threshold": threshold, "placed": int(placed), "flagged": int(flagged), "moved": int(moved),
            "caught": int(caught), "recall": caught / moved if moved else None,
            "workload": flagged / placed if placed else None,
            "flagged_labelled": int(flagged_labelled), "flagged_absent": int(flagged_absent)}


def _summary(t: Mapping[str, float]) -> dict[str, Any]:
    points, measured = int(t.get("points", 0)), int(t.get("measured", 0))
    return {
        "points": points,
        "moved": int(t.get("moved", 0)),
        "moved_share": t["moved"] / points if points else None,
        "mean_displacement_px": t["displacement_px"] / measured if measured else None,
        "mean_displacement_rel": t["displacement_rel"] / measured if measured else None,
    }


def _match(finals: Sequence[dict], guesses: Sequence[dict], sigmas: np.ndarray
           ) -> list[tuple[dict, dict | None]]:
    """Greedy one-to-one matching by OKS; unmatched final people pair with None."""
    pairs = sorted(((oks(keypoints_array(g), keypoints_array(f), sigmas, _area(f)), i, j)
                    for i, f in enumerate(finals) for j, g in enumerate(guesses)), reverse=True)
    used_f, used_g, out = set(), set(), []
    for score, i, j in pairs:
        if score > 0 and i not in used_f and j not in used_g:
            used_f.add(i), used_g.add(j)
            out.append((finals[i], guesses[j]))
    return out + [(f, None) for i, f in enumerate(finals) if i not in used_f]




def _area(ann: dict) -> float:
    area = ann.get("area") or (ann["bbox"][2] * ann["bbox"][3] if ann.get("bbox") else 0.0)
    return max(float(area), 1.0)
