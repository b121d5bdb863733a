"""Paired verdicts of a finished `cals simulate` run against any of its campaigns, not only random:
is a selection order with the pool set better than random order with the pool set?

    python -m bench.paired bench/results/al-pseudo --reference random@pool+pseudo \
        --strategies typiclust@pool+pseudo,least_confidence@pool+pseudo

Same statistics as the run's own summary (`cals.simulate.stats.compare`: paired spine-AP difference
at the full budget and at every labelled count, 95 % bootstrap intervals over seeds).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from cals.cli.simulate import split_specs
from cals.simulate.stats import compare, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished `cals simulate` folder (results.json)")
    parser.add_argument("--reference", required=True, help="the campaign compared against")
    parser.add_argument("--strategies", required=True, help="campaigns to compare, comma-separated specs")
    args = parser.parse_args()
    rows = json.loads((args.run / "results.json").read_text())["rows"]
    budget = max(r["labelled"] for r in rows)
    for strategy in split_specs(args.strategies):
        result = compare(rows, strategy, budget, reference=args.reference)
        print(verdict(strategy, result, args.reference))
        if result:
            steps = ", ".join(f"{n} {v['difference']:+.3f} ({v['interval'][0]:+.3f} to {v['interval'][1]:+.3f})"
                              for n, v in result["by_labels"].items() if n != min(result["by_labels"]))
            print(f"  by labels: {steps}")


if __name__ == "__main__":
    main()
