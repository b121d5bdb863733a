"""Fine-tuning the served model against retraining from the base: two `cals simulate` runs that differ
only in --train-from, compared seed by seed (each seed starts both from the same base and the same
20 random frames, so a seed is one paired trial).

    python -m bench.train_from bench/results/al bench/results/al-retrain --strategy random
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cals.simulate.stats import LEVEL, MIN_SEEDS, mean_interval


def curves(out: Path, strategy: str) -> dict[int, dict[int, float]]:
    """seed → labelled count → spine AP of a finished campaign."""
    found = {}
    for path in sorted((out / "runs").glob(f"seed*/{strategy}/state.json")):
        rows = json.loads(path.read_text())["rounds"]
        found[rows[0]["seed"]] = {r["labelled"]: r["spine_AP"] or 0.0 for r in rows}
    return found


def compare(current: Path, base: Path, strategy: str) -> list[dict]:
    """Per labelled count: mean spine AP of each mode and the paired difference (base − current) with
    its bootstrap interval over seeds."""
    a, b = curves(current, strategy), curves(base, strategy)
    seeds = sorted(a.keys() & b.keys())
    counts = sorted(set.intersection(*(set(a[s]) & set(b[s]) for s in seeds))) if seeds else []
    out = []
    for n in counts:
        diffs = [b[s][n] - a[s][n] for s in seeds]
        lo, hi = mean_interval(diffs)
        out.append({"labelled": n, "seeds": len(seeds), "current": round(float(np.mean([a[s][n] for s in seeds])), 4),
                    "base": round(float(np.mean([b[s][n] for s in seeds])), 4),
                    "difference": round(float(np.mean(diffs)), 4), "interval": [round(lo, 4), round(hi, 4)]})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("current", type=Path, help="simulation folder run with --train-from current")
    p.add_argument("base", type=Path, help="the same simulation run with --train-from base")
    p.add_argument("--strategy", default="random")
    args = p.parse_args()
    rows = compare(args.current, args.base, args.strategy)
    print(f"{'labels':>6} {'fine-tune':>9} {'retrain':>8} {'retrain - fine-tune':>20} {LEVEL:.0%} CI")
    for r in rows:
        print(f"{r['labelled']:>6} {r['current']:>9.3f} {r['base']:>8.3f} {r['difference']:>+20.3f} "
              f"{r['interval'][0]:+.3f} to {r['interval'][1]:+.3f}")
    if rows and rows[-1]["seeds"] < MIN_SEEDS:
        print(f"no verdict from {rows[-1]['seeds']} seed(s)")
    elif rows:
        lo, hi = rows[-1]["interval"]
        verdict = "retraining better" if lo > 0 else "fine-tuning better" if hi < 0 else "no difference beyond noise"
        print(f"at {rows[-1]['labelled']} labels: {verdict} ({rows[-1]['seeds']} seeds, strategy {args.strategy})")


if __name__ == "__main__":
    main()
