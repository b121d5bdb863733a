"""Points to check: the recall and workload of the check rule (`CALS_CHECK_BELOW`) in a finished simulation.

Each round of a campaign pre-annotates the frames it picked with the model served when they were
picked (the sampler's own `round_coco`), and the simulated annotator's ground truth says which points
had to be moved (`training/effort.py`). For every threshold, per point group:
- recall: the share of moved points the rule flagged;
- workload: the share of pre-annotated points it flagged;
- flagged but labelled: flagged points a person labels; hidden as `outside`, they would be lost.
Rows a run already recorded (`checks`) are read; older runs are measured again from their registries.
The pool's body points are labelled (a COCO dataset gains a spine), so no body point is moved in a
round; body figures come from the function's case instead: each seed's last served model
pre-annotating the test set from nothing (`--function`, on by default).

    python -m bench.check_rule bench/results/al --strategy random
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cals.data.pool import LocalPool
from cals.sampling.round_coco import round_coco
from cals.sampling.scoring import Scorer
from cals.schema import load_schema
from cals.data.coco import annotations_by_name
from cals.simulate.loop import CHECK_GRID, Campaign, annotator_work
from cals.simulate.stats import mean_interval

TARGET_RECALL, TARGET_WORKLOAD = 0.80, 0.40


def campaign_checks(out: Path, strategy: str, schema) -> dict[int, list[dict]]:
    """seed → the `checks` of each round after round 0 (measured again where the run has none)."""
    found = {}
    for c, state in _campaigns(out, strategy, schema):
        rounds = []
        for r in range(1, len(state["rounds"])):
            row = state["rounds"][r]
            if "checks" not in row or [x["threshold"] for x in row["checks"]["spine"]] != list(CHECK_GRID):
                scorer = Scorer(c.predictor(state["rounds"][r - 1]["version"]), cache=c.cache)
                row = annotator_work(c, scorer, LocalPool(c.pool_view, schema), state["picked"][r])
            rounds.append(row["checks"])
        found[c.seed] = rounds
    return found


def function_checks(out: Path, strategy: str, schema) -> dict[int, list[dict]]:
    """seed → [checks] of the campaign's last served model on the test set, nothing labelled."""
    from cals.training.effort import check_rule_figures

    found = {}
    test = LocalPool(out / "data" / "test", schema)
    truth = annotations_by_name(test.dataset.coco)
    for c, state in _campaigns(out, strategy, schema):
        scorer = Scorer(c.predictor(state["rounds"][-1]["version"]))
        frames = [{**scorer.frame_record(item, test.image_bytes(item)), "labelled": None} for item in test.items()]
        found[c.seed] = [check_rule_figures(annotations_by_name(round_coco(frames, schema)), truth, schema, CHECK_GRID)]
    return found


def _campaigns(out: Path, strategy: str, schema):
    """(Campaign, state) of each finished campaign of `strategy` under a simulation folder."""
    for path in sorted((out / "runs").glob(f"seed*/{strategy}/state.json")):
        state = json.loads(path.read_text())
        yield Campaign(None, schema, strategy, state["rounds"][0]["seed"], path.parent, out / "data" / "pool",
                       out / "data" / "pool-body", out / "data" / "test"), state


def table(found: dict[int, list[dict]], group: str) -> list[dict]:
    """Per threshold: pooled recall and workload of each seed, their mean and 95 % interval over seeds."""
    out = []
    for i, threshold in enumerate(CHECK_GRID):
        per_seed = {}
        for seed, rounds in found.items():
            n = {k: sum(r[group][i][k] for r in rounds) for k in ("placed", "flagged", "moved", "caught",
                                                                  "flagged_labelled")}
            per_seed[seed] = (n["caught"] / n["moved"] if n["moved"] else np.nan, n["flagged"] / max(n["placed"], 1),
                              n["flagged_labelled"] / max(n["flagged"], 1))
        recall, workload, labelled = (np.array([v[j] for v in per_seed.values()]) for j in range(3))
        moved = not np.isnan(recall).any()
        out.append({"threshold": threshold, "seeds": len(per_seed),
                    "recall": round(float(recall.mean()), 4) if moved else None,
                    "recall_interval": _interval(recall) if moved else None,
                    "workload": round(float(workload.mean()), 4), "workload_interval": _interval(workload),
                    "flagged_labelled": round(float(labelled.mean()), 4)})
    return out


def _interval(values: np.ndarray) -> list[float]:
    lo, hi = mean_interval(list(values)) if len(values) > 1 else (float(values[0]), float(values[0]))
    return [round(lo, 4), round(hi, 4)]


def markdown(rows: dict[str, list[dict]]) -> str:
    lines = ["| CALS_CHECK_BELOW | spine recall | spine workload | body recall | body workload | "
             "flagged points a person labels (spine / body) |", "|---|---|---|---|---|---|"]
    for s, b in zip(rows["spine"], rows["body"]):
        ok = (s["recall"] or 0) >= TARGET_RECALL and s["workload"] <= TARGET_WORKLOAD
        lines.append(f"| {s['threshold']:.1f}{' ✓' if ok else ''} | {_pct(s, 'recall')} | {_pct(s, 'workload')} | "
                     f"{_pct(b, 'recall')} | {_pct(b, 'workload')} | "
                     f"{s['flagged_labelled']:.0%} / {b['flagged_labelled']:.0%} |")
    return "\n".join(lines)


def _pct(row: dict, key: str) -> str:
    if row[key] is None:
        return "— (no point moved)"
    lo, hi = row[f"{key}_interval"]
    return f"{row[key]:.0%} ({lo:.0%}–{hi:.0%})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.check_rule", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="a finished `cals simulate` folder (make benchmark-al's)")
    parser.add_argument("--strategy", default="random", help="whose rounds (default: random, the default order)")
    parser.add_argument("--no-function", dest="function", action="store_false",
                        help="skip the function's case (the last models on the test set)")
    args = parser.parse_args(argv)
    schema = load_schema()
    found = campaign_checks(args.out, args.strategy, schema)
    if not found:
        parser.error(f"no finished {args.strategy!r} campaign under {args.out}/runs")
    report = {"rounds": {group: table(found, group) for group in ("spine", "body")}}
    print(f"points to check in the sampler's rounds, {args.strategy}: {sum(map(len, found.values()))} rounds of "
          f"{len(found)} seed(s); target: spine recall >= {TARGET_RECALL:.0%} at workload <= "
          f"{TARGET_WORKLOAD:.0%} (✓)")
    print(markdown(report["rounds"]))
    if args.function:
        tested = function_checks(args.out, args.strategy, schema)
        report["function"] = {group: table(tested, group) for group in ("spine", "body")}
        print(f"\nthe function's case: each seed's last {args.strategy} model pre-annotating the "
              f"{len(LocalPool(args.out / 'data' / 'test', schema))}-frame test set, nothing labelled")
        print(markdown(report["function"]))
    (args.out / f"check_rule-{args.strategy}.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
