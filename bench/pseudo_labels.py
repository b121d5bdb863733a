"""Pseudo-labels: how many of the served model's spine points lie within OKS 0.5 of the truth, at each
score threshold, with and without a flip-agreement filter, in a finished simulation.

For the models a campaign served (one per round, each seed), every pool frame the campaign had not
labelled yet is predicted with its true boxes, as the sampler caches it for the trainer; a spine
point scoring at least the threshold would become a pseudo-label. Reported per threshold:
- kept: the share of the spine points it keeps;
- precision: the share of the kept points within the effort tolerance (OKS term 0.5) of the truth;
- with flip agreement: kept only where a second pass on the mirrored frame (flip test off) puts the
  point within the same tolerance of the first; the cost is that second pass on every pool frame.

    python -m bench.pseudo_labels bench/results/al --strategy random --thresholds 0.5,0.6,0.7
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from cals.data.coco import annotations_by_name, load_dataset
from cals.model.predict import Predictor
from cals.registry import Registry
from cals.sampling.model_passes import predict_mirrored
from cals.data.pool import LocalPool
from cals.schema import load_schema
from cals.settings import default
from cals.simulate.stats import mean_interval

TOLERANCE: float = default("CALS_EFFORT_TOLERANCE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished `cals simulate` folder")
    parser.add_argument("--strategy", default="random", help="the campaign whose served models are measured")
    parser.add_argument("--thresholds", default="0.5,0.6,0.7")
    parser.add_argument("--rounds", default="0,2,5", help="rounds whose served model is measured")
    parser.add_argument("--out", type=Path, help="JSON (default: RUN/pseudo-labels-STRATEGY.json)")
    args = parser.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    rows = measure(args.run, args.strategy, thresholds, [int(r) for r in args.rounds.split(",")])
    out = args.out or args.run / f"pseudo-labels-{args.strategy}.json"
    out.write_text(json.dumps(rows, indent=1))
    print(format_table(rows, thresholds))
    print(f"rows: {out}")


def measure(run: Path, strategy: str, thresholds: list[float], rounds: list[int]) -> list[dict]:
    schema = load_schema()
    truth = annotations_by_name(load_dataset(run / "data" / "pool", schema).coco)
    pool = LocalPool(run / "data" / "pool-body", schema)
    sigmas = np.asarray(schema.sigmas, float)
    spine = np.asarray(schema.groups["spine"])
    rows = []
    for folder in sorted((run / "runs").glob(f"seed*/{strategy}")):
        state = json.loads((folder / "state.json").read_text())
        registry = Registry(folder / "registry")
        for r in (r for r in rounds if r < len(state["rounds"])):
            row = state["rounds"][r]
            labelled = set(state["labelled"][:row["labelled"]])
            predictor = Predictor.from_registry(registry, row["version"])
            start = time.perf_counter()
            counts = _count(predictor, pool, truth, labelled, thresholds, sigmas, spine)
            rows.append({"seed": int(folder.parent.name.removeprefix("seed")), "round": r, "labelled": row["labelled"],
                         "version": row["version"], "seconds_two_passes": round(time.perf_counter() - start, 1),
                         "thresholds": counts})
    return rows


def _count(predictor, pool: LocalPool, truth: dict, labelled: set[str], thresholds: list[float],
           sigmas: np.ndarray, spine: np.ndarray) -> dict[str, dict[str, int]]:
    totals = {str(t): dict.fromkeys(("points", "kept", "right", "kept_flip", "right_flip"), 0) for t in thresholds}
    for item in pool.items():
        if item.name in labelled or item.boxes is None:
            continue
        image = pool.load([item])[0]
        people = predictor.predict(image, item.boxes, distributions=False)
        mirrored = predict_mirrored(predictor, image, item.boxes)
        for person, other, gt in zip(people, mirrored, truth[item.name]):
            area = max(float(gt["area"]), 1.0)
            g = np.asarray(gt["keypoints"], float).reshape(-1, 3)
            right = _close(person.keypoints, g[:, :2], area, sigmas) & (g[:, 2] > 0)
            agree = _close(person.keypoints, other.keypoints, area, sigmas)
            judged = spine[g[spine, 2] > 0]  # spine points the truth has
            for t in thresholds:
                c = totals[str(t)]
                keep = judged[np.asarray(person.scores)[judged] >= t]
                c["points"] += len(judged)
                c["kept"] += len(keep)
                c["right"] += int(right[keep].sum())
                c["kept_flip"] += int(agree[keep].sum())
                c["right_flip"] += int((right & agree)[keep].sum())
    return totals


def _close(a, b, area: float, sigmas: np.ndarray) -> np.ndarray:
    """Per point: whether a lies within the effort tolerance of b (the OKS term of training/effort.py)."""
    d2 = ((np.asarray(a, float)[:, :2] - np.asarray(b, float)[:, :2]) ** 2).sum(axis=1)
    return np.exp(-d2 / (2 * area * (2 * sigmas) ** 2)) >= TOLERANCE


def format_table(rows: list[dict], thresholds: list[float]) -> str:
    """Per round and threshold: kept share and precision (mean and 95 % interval over seeds), plain
    and with flip agreement."""
    lines = ["round labels threshold  kept   precision (95% CI)      | flip: kept  precision (95% CI)"]
    for r in sorted({row["round"] for row in rows}):
        mine = [row for row in rows if row["round"] == r]
        for t in thresholds:
            c = [row["thresholds"][str(t)] for row in mine]
            kept = [x["kept"] / x["points"] for x in c]
            prec = [x["right"] / x["kept"] for x in c if x["kept"]]
            kept_f = [x["kept_flip"] / x["points"] for x in c]
            prec_f = [x["right_flip"] / x["kept_flip"] for x in c if x["kept_flip"]]
            lines.append(f"{r:5d} {mine[0]['labelled']:6d} {t:9.2f} {np.mean(kept):5.0%} {_ci(prec):>24} | "
                         f"{np.mean(kept_f):10.0%} {_ci(prec_f):>24}")
    return "\n".join(lines)


def _ci(values: list[float]) -> str:
    if not values:
        return "-"
    lo, hi = mean_interval(values)
    return f"{np.mean(values):.1%} ({lo:.1%} to {hi:.1%})"


if __name__ == "__main__":
    main()
