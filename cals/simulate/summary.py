"""Results of a simulation: per-round rows (JSON, CSV), the label-efficiency plot, and the table of
labels each strategy needs to reach what random sampling reaches with the whole budget."""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from cals.data.coco import load_dataset
from cals.schema import Schema, load_schema
from cals.simulate import data
from cals.simulate.config import SimulationConfig
from cals.simulate.picks import format_picks_table, frame_attributes, picks_markdown, picks_summary
from cals.simulate.stats import LEVEL, MIN_SEEDS, by_seed, compare, interpolate, labels_to_reach, mean_interval, verdict

CSV_FIELDS = ["strategy", "seed", "round", "labelled", "spine_AP", "body_AP", "AP", "candidate_spine_AP",
              "candidate_AP", "effort_spine_moved_share", "promoted", "version", "seconds", "pool_people",
              "pseudo_points", "pseudo_precision"]


def collect(out: Path, cfg: SimulationConfig) -> list[dict[str, Any]]:
    rows = []
    for seed in cfg.seeds:
        for strategy in cfg.strategies_for(seed):
            path = out / "runs" / f"seed{seed}" / strategy / "state.json"
            if path.is_file():
                rows += json.loads(path.read_text())["rounds"]
    return rows


def curves(rows: list[dict]) -> dict[str, dict[int, list[float]]]:
    """strategy → labelled count → spine AP of each seed."""
    out: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        out[r["strategy"]][r["labelled"]].append(r["spine_AP"] or 0.0)
    return out


def label_savings(rows: list[dict], cfg: SimulationConfig) -> dict[str, dict[str, Any]]:
    """Per strategy: labels to reach random's mean spine AP at the full budget, and the saving. The
    target is random's on the strategy's own seeds (a survey run on seed 0 is held to seed 0's)."""
    c = curves(rows)
    random_final = c.get("random", {}).get(cfg.budget)
    target = float(np.mean(random_final)) if random_final else None
    ref = by_seed(rows, "random")
    table = {}
    for strategy, by_n in c.items():
        means = {n: float(np.mean(v)) for n, v in sorted(by_n.items())}
        seeds = [s for s in by_seed(rows, strategy) if cfg.budget in ref.get(s, {})]
        own = float(np.mean([ref[s][cfg.budget] for s in seeds])) if seeds else None
        needed = labels_to_reach(means, own) if own is not None else None
        final = by_n.get(cfg.budget, [])
        table[strategy] = {
            "final_spine_AP_mean": round(float(np.mean(final)), 4) if final else None,
            "final_spine_AP_std": round(float(np.std(final)), 4) if final else None,
            "labels_to_random_final": None if needed is None else round(needed, 1),
            "saving_vs_random": None if needed is None else round(1 - needed / cfg.budget, 3),
            "point_saving_vs_random": _point_saving(rows, strategy, needed, cfg.budget),
            "paired_wins": _paired_wins(rows, strategy),
            "kept": _kept(rows, strategy),
            "effort_spine_moved_share": _mean_effort(rows, strategy),
            "family_difference": _family_difference(rows, strategy, cfg.budget),
            "points_to_check": points_to_check(rows, strategy),
            "pseudo_labels": pseudo_labels(rows, strategy),
            "seconds_per_round": _seconds(rows, strategy),
            "vs_random": compare(rows, strategy, cfg.budget),
        }
    return {"target_spine_AP": target, "budget": cfg.budget, "strategies": table}


def points_to_check(rows: list[dict], strategy: str, threshold: float | None = None) -> dict[str, Any] | None:
    """The check rule at `threshold` (default CALS_CHECK_BELOW) over the strategy's rounds after round 0,
    pooled: spine recall (moved points flagged) and workload (pre-annotated points flagged)."""
    from cals.cvat.point_checks import DEFAULT_CHECK_BELOW

    threshold = DEFAULT_CHECK_BELOW if threshold is None else threshold
    found = [row for r in rows if r["strategy"] == strategy and r["round"] > 0 and r.get("checks")
             for row in r["checks"]["spine"] if abs(row["threshold"] - threshold) < 1e-9]
    if not found:
        return None
    n = {k: sum(row[k] for row in found) for k in ("placed", "flagged", "moved", "caught")}
    return {"threshold": threshold, "rounds": len(found),
            "spine_recall": round(n["caught"] / n["moved"], 4) if n["moved"] else None,
            "spine_workload": round(n["flagged"] / n["placed"], 4) if n["placed"] else None}


def pseudo_labels(rows: list[dict], strategy: str) -> dict[str, Any] | None:
    """The strategy's pseudo-labels over its rounds: spine points a round took (of those it could),
    and their precision against the hidden truth (within the effort tolerance), pooled and per round."""
    found = [r["pool_set"] for r in rows if r["strategy"] == strategy and (r.get("pool_set") or {}).get("pseudo")]
    judged = [p["pseudo_accuracy"] for p in found if (p.get("pseudo_accuracy") or {}).get("placed")]
    if not found:
        return None
    taken, could = sum(p["pseudo_points"] for p in found), sum(p["pseudo_candidates"] for p in found)
    return {"rounds": len(found), "points_per_round": round(taken / len(found)),
            "kept_share": round(taken / could, 4) if could else None,
            "precision": round(sum(a["within"] for a in judged) / sum(a["placed"] for a in judged), 4) if judged else None,
            "lowest_round_precision": min(a["share"] for a in judged) if judged else None,
            "threshold": found[0]["threshold"]}


def _seconds(rows: list[dict], strategy: str) -> float | None:
    """Median seconds of the strategy's rounds after round 0 (scoring, the pool set, training, testing)."""
    found = [r["seconds"] for r in rows if r["strategy"] == strategy and r["round"] > 0 and r.get("seconds")]
    return round(float(np.median(found)), 1) if found else None


def moved_points(rows: list[dict], strategy: str, seeds: set[int] | None = None) -> dict[int, float]:
    """labelled count → spine points the annotator moved up to then (cumulative), mean over seeds."""
    per_seed: dict[int, dict[int, float]] = defaultdict(dict)
    for r in sorted((r for r in rows if r["strategy"] == strategy and (seeds is None or r["seed"] in seeds)),
                    key=lambda r: r["labelled"]):
        moved = (r.get("effort_spine") or {}).get("moved") or 0
        curve = per_seed[r["seed"]]
        curve[r["labelled"]] = (curve[max(curve)] if curve else 0.0) + moved
    counts = sorted({n for c in per_seed.values() for n in c})
    return {n: float(np.mean([c[n] for c in per_seed.values() if n in c])) for n in counts}


def _point_saving(rows: list[dict], strategy: str, needed: float | None, budget: int) -> float | None:
    """The saving in corrected spine points: points moved to reach random's final AP against the
    points random's annotator moved for its whole budget."""
    mine = moved_points(rows, strategy)
    ref = moved_points(rows, "random", {r["seed"] for r in rows if r["strategy"] == strategy})
    if needed is None or budget not in ref or not ref[budget]:
        return None
    return round(1 - interpolate(mine, needed) / ref[budget], 3)


def _kept(rows: list[dict], strategy: str) -> str:
    """Rounds after round 0 whose candidate the gate did not promote."""
    mine = [r for r in rows if r["strategy"] == strategy and r["round"] > 0]
    return f"{sum(not r.get('promoted', True) for r in mine)}/{len(mine)}"


def _family_difference(rows: list[dict], strategy: str, budget: int) -> dict[str, float] | None:
    """Per pose family: the strategy's spine AP at the full budget minus random's, mean over paired seeds."""
    if strategy == "random":
        return None
    final = {(r["strategy"], r["seed"]): r.get("families") or {} for r in rows if r["labelled"] == budget}
    seeds = sorted({s for (name, s) in final if name == strategy} & {s for (name, s) in final if name == "random"})
    out = {}
    for family in sorted({f for fams in final.values() for f in fams}):
        diffs = [final[(strategy, s)].get(family) - final[("random", s)].get(family) for s in seeds
                 if final[(strategy, s)].get(family) is not None and final[("random", s)].get(family) is not None]
        if diffs:
            out[family] = round(float(np.mean(diffs)), 4)
    return out or None


def _paired_wins(rows: list[dict], strategy: str) -> str | None:
    """Rounds after round 0 where the strategy beat random on the same seed (same start)."""
    if strategy == "random":
        return None
    ref = {(r["seed"], r["round"]): r["spine_AP"] or 0 for r in rows if r["strategy"] == "random"}
    mine = [(r["seed"], r["round"], r["spine_AP"] or 0) for r in rows if r["strategy"] == strategy and r["round"] > 0]
    pairs = [(ap, ref[(s, k)]) for s, k, ap in mine if (s, k) in ref]
    return f"{sum(a > b for a, b in pairs)}/{len(pairs)}"


def _mean_effort(rows: list[dict], strategy: str) -> float | None:
    shares = [r["effort_spine"]["moved_share"] for r in rows
              if r["strategy"] == strategy and r["round"] > 0 and r.get("effort_spine")
              and r["effort_spine"].get("moved_share") is not None]
    return round(float(np.mean(shares)), 3) if shares else None


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, CSV_FIELDS)
        w.writeheader()
        for r in rows:
            effort = (r.get("effort_spine") or {}).get("moved_share")
            candidate = r.get("candidate") or {}
            pool = r.get("pool_set") or {}
            w.writerow({**{k: r.get(k) for k in CSV_FIELDS}, "effort_spine_moved_share": effort,
                        "candidate_spine_AP": candidate.get("spine_AP"), "candidate_AP": candidate.get("AP"),
                        "pool_people": pool.get("people"), "pseudo_points": pool.get("pseudo_points"),
                        "pseudo_precision": (pool.get("pseudo_accuracy") or {}).get("share")})


def plot(rows: list[dict], path: Path, cfg: SimulationConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for strategy, by_n in sorted(curves(rows).items(), key=lambda item: item[0] in cfg.survey):
        n = np.array(sorted(by_n))
        mean = np.array([np.mean(by_n[k]) for k in n])
        if strategy in cfg.survey:  # one seed: a thin line, no band
            ax.plot(n, mean, linestyle="--", linewidth=0.8, label=f"{strategy} (seed {cfg.seeds[0]})")
            continue
        band = np.array([mean_interval(by_n[k]) for k in n])
        ax.plot(n, mean, marker="o", label=strategy)
        ax.fill_between(n, band[:, 0], band[:, 1], alpha=0.2)
    first = by_seed(rows, "random").get(cfg.seeds[0])
    if cfg.survey and first:  # the survey's lines are one seed's: random's on that seed is their reference
        n = sorted(first)
        ax.plot(n, [first[k] for k in n], color="black", linestyle=":", linewidth=1.2,
                label=f"random (seed {cfg.seeds[0]}): the survey's reference")
    ax.set_xlabel("labelled images")
    ax.set_ylabel("spine AP (held-out, balanced poses)")
    ax.set_title(f"label efficiency: mean of {len(cfg.seeds)} seed(s), {LEVEL:.0%} bootstrap CI")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def format_table(savings: dict[str, Any]) -> str:
    """The text table `cals simulate` prints: final spine AP, labels and corrected points to random's
    final AP, rounds won against random, rounds the gate kept the old model, effort; then a verdict
    and the per-family differences of each strategy."""
    target = savings["target_spine_AP"]
    lines = [f"random reaches spine AP {target:.3f} with {savings['budget']} labels" if target is not None
             else "random has not finished its budget yet",
             f"{'strategy':<28} {'final AP':>12} {'labels to it':>12} {'saving':>7} {'points':>7} {'wins':>6} "
             f"{'kept':>6} {'effort':>6}"]
    for name, s in savings["strategies"].items():
        final = "-" if s["final_spine_AP_mean"] is None else f"{s['final_spine_AP_mean']:.3f}±{s['final_spine_AP_std']:.3f}"
        needed = "not reached" if s["labels_to_random_final"] is None else f"{s['labels_to_random_final']:.0f}"
        lines.append(f"{name:<28} {final:>12} {needed:>12} {_pct(s['saving_vs_random']):>7} "
                     f"{_pct(s.get('point_saving_vs_random')):>7} {s['paired_wins'] or '-':>6} {s.get('kept', '-'):>6} "
                     f"{_pct(s['effort_spine_moved_share']):>6}")
    for name, s in savings["strategies"].items():
        checks = s.get("points_to_check")
        if checks:
            lines.append(f"{name} points to check (CALS_CHECK_BELOW={checks['threshold']}): the flags caught "
                         f"{_pct(checks['spine_recall'])} of the spine points moved, flagging "
                         f"{_pct(checks['spine_workload'])} of all spine points ({checks['rounds']} rounds)")
        pseudo = s.get("pseudo_labels")
        if pseudo and pseudo["precision"] is not None:
            lines.append(f"{name} pseudo-labels (score >= {pseudo['threshold']}): {pseudo['points_per_round']} spine "
                         f"points a round, {_pct(pseudo['kept_share'])} of those it could take; "
                         f"{100 * pseudo['precision']:.1f}% within OKS 0.5 of the truth (lowest round "
                         f"{100 * pseudo['lowest_round_precision']:.1f}%); {s['seconds_per_round']} s a round")
        if name == "random":
            continue
        lines.append(verdict(name, s.get("vs_random")))
        steps = (s.get("vs_random") or {}).get("by_labels") or {}
        if steps and s["vs_random"]["seeds"] >= MIN_SEEDS:
            lines.append(f"  {name} vs random by labels: " + ", ".join(
                f"{n} {d['difference']:+.3f} ({d['interval'][0]:+.3f} to {d['interval'][1]:+.3f})"
                for n, d in steps.items() if int(n) != min(map(int, steps))))
        if s.get("family_difference"):
            lines.append(f"  {name} per family vs random at the full budget: " +
                         ", ".join(f"{f} {d:+.3f}" for f, d in s["family_difference"].items()))
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def what_strategies_pick(out: Path, cfg: SimulationConfig, schema: Schema) -> dict[str, dict]:
    """Attributes of the frames each strategy picked after round 0 (all seeds pooled), and of the pool."""
    pool = Path(cfg.pool) if cfg.pool else out / "data" / "pool"
    coco = load_dataset(pool, schema).coco
    attrs = frame_attributes(coco, schema)
    picks: dict[str, list[str]] = defaultdict(list)
    for seed in cfg.seeds:
        for strategy in cfg.strategies_for(seed):
            path = out / "runs" / f"seed{seed}" / strategy / "state.json"
            if path.is_file():
                picks[strategy] += [n for batch in json.loads(path.read_text()).get("picked", [])[1:] for n in batch]
    families = sorted({f for a in attrs.values() for f in a.get("families") or []})
    return picks_summary(dict(picks), attrs, families, pool=data.image_names(pool, schema))


def summarize(out: Path, cfg: SimulationConfig, schema: Schema | None = None) -> dict[str, Any]:
    """results.json, results.csv, the plot, and picks.txt / picks.md (what each strategy picks)."""
    schema = schema or load_schema()
    rows = collect(out, cfg)
    savings = label_savings(rows, cfg)
    picked = what_strategies_pick(out, cfg, schema)
    doc = {"config": cfg.__dict__, "rows": rows, "summary": savings, "picks": picked}
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    write_csv(rows, out / "results.csv")
    plot(rows, out / "label_efficiency.png", cfg)
    (out / "picks.txt").write_text(format_picks_table(picked) + "\n")
    (out / "picks.md").write_text(picks_markdown(picked) + "\n")
    return doc
