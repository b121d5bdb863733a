"""Results of a simulation: per-round rows (JSON, CSV), the label-efficiency plot, and the table of
labels each strategy needs to reach what random sampling reaches with the whole budget."""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from cals.simulate.config import SimulationConfig
from cals.simulate.stats import LEVEL, compare, labels_to_reach, mean_interval, verdict

CSV_FIELDS = ["strategy", "seed", "round", "labelled", "spine_AP", "body_AP", "AP", "effort_spine_moved_share",
              "promoted", "version", "seconds"]


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
    """Per strategy: labels to reach random's mean spine AP at the full budget, and the saving."""
    c = curves(rows)
    random_final = c.get("random", {}).get(cfg.budget)
    target = float(np.mean(random_final)) if random_final else None
    table = {}
    for strategy, by_n in c.items():
        means = {n: float(np.mean(v)) for n, v in sorted(by_n.items())}
        needed = labels_to_reach(means, target) if target is not None else None
        final = by_n.get(cfg.budget, [])
        table[strategy] = {
            "final_spine_AP_mean": round(float(np.mean(final)), 4) if final else None,
            "final_spine_AP_std": round(float(np.std(final)), 4) if final else None,
            "labels_to_random_final": needed,
            "saving_vs_random": None if needed is None else round(1 - needed / cfg.budget, 3),
            "paired_wins": _paired_wins(rows, strategy),
            "effort_spine_moved_share": _mean_effort(rows, strategy),
            "vs_random": compare(rows, strategy, cfg.budget),
        }
    return {"target_spine_AP": target, "budget": cfg.budget, "strategies": table}


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
            w.writerow({**{k: r.get(k) for k in CSV_FIELDS}, "effort_spine_moved_share": effort})


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
    ax.set_xlabel("labelled images")
    ax.set_ylabel("spine AP (held-out, balanced poses)")
    ax.set_title(f"label efficiency: mean of {len(cfg.seeds)} seed(s), {LEVEL:.0%} bootstrap CI")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def format_table(savings: dict[str, Any]) -> str:
    target = savings["target_spine_AP"]
    lines = [f"random reaches spine AP {target:.3f} with {savings['budget']} labels" if target is not None
             else "random has not finished its budget yet",
             f"{'strategy':<20} {'final AP':>14} {'labels to that AP':>18} {'saving':>8} {'wins':>7} {'effort':>7}"]
    for name, s in savings["strategies"].items():
        final = "-" if s["final_spine_AP_mean"] is None else f"{s['final_spine_AP_mean']:.3f}±{s['final_spine_AP_std']:.3f}"
        needed = "not reached" if s["labels_to_random_final"] is None else str(s["labels_to_random_final"])
        saving = "-" if s["saving_vs_random"] is None else f"{100 * s['saving_vs_random']:.0f}%"
        effort = "-" if s["effort_spine_moved_share"] is None else f"{100 * s['effort_spine_moved_share']:.0f}%"
        lines.append(f"{name:<20} {final:>14} {needed:>18} {saving:>8} {s['paired_wins'] or '-':>7} {effort:>7}")
    lines += [verdict(name, s.get("vs_random")) for name, s in savings["strategies"].items() if name != "random"]
    return "\n".join(lines)


def summarize(out: Path, cfg: SimulationConfig) -> dict[str, Any]:
    rows = collect(out, cfg)
    savings = label_savings(rows, cfg)
    doc = {"config": cfg.__dict__, "rows": rows, "summary": savings}
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    write_csv(rows, out / "results.csv")
    plot(rows, out / "label_efficiency.png", cfg)
    return doc
