"""The soak's figures from what it recorded: per-window latency, memory against minute 10, jobs learned
against jobs completed, and one verdict line; and the plot."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

WINDOW_S = 300.0


def _in(windows: list[dict], t: float, *, cvat_down: bool) -> bool:
    return any(w["start"] <= t <= (w["end"] or t) + 30 for w in windows if w["cvat_down"] or not cvat_down)


def latency_windows(calls: list[tuple], start: float, windows: list[dict]) -> list[dict]:
    """Per 5-minute window: AI-tools calls answered, p50/p95 seconds, and errors to valid requests (a call
    that fails while CVAT itself was restarted is counted apart, as expected)."""
    out: dict[int, dict] = {}
    for wall, seconds, status, detail in calls:
        w = out.setdefault(int((wall - start) // WINDOW_S), {"ok": [], "errors": [], "during_cvat_restart": 0})
        if status == 200:
            w["ok"].append(seconds)
        elif _in(windows, wall, cvat_down=True):
            w["during_cvat_restart"] += 1
        else:
            w["errors"].append(f"{status}: {detail}")
    rows = []
    for index in sorted(out):
        ok = sorted(out[index]["ok"])
        rows.append({"minutes": [index * WINDOW_S / 60, (index + 1) * WINDOW_S / 60], "calls": len(ok),
                     "p50_s": round(statistics.median(ok), 3) if ok else None,
                     "p95_s": round(ok[max(0, int(round(0.95 * len(ok))) - 1)], 3) if ok else None,
                     "errors": out[index]["errors"], "failed_during_cvat_restart": out[index]["during_cvat_restart"]})
    return rows


def memory_growth(samples: list[dict], starts: dict[str, list[float]]) -> dict[str, dict]:
    """Per role: RSS 10 minutes after its last start against its last sample (a restart by a fault begins
    a new process, so the baseline is taken in the process that ran to the end)."""
    out = {}
    roles = {role for s in samples for role in s.get("processes", {})}
    for role in sorted(roles):
        since = max(starts.get(role, [samples[0]["t"]]))
        series = [(s["t"], s["processes"][role]) for s in samples if s.get("processes", {}).get(role) and s["t"] >= since]
        if not series:
            continue
        base = next(((t, m) for t, m in series if t >= since + 600), None)
        last_t, last = series[-1]
        row = {"last_start_min": None, "rss_mb_last": last["rss_mb"], "open_files_last": last["open_files"],
               "rss_mb_max": max(m["rss_mb"] for _, m in series)}
        if base is None:
            row["verdict"] = "ran under 10 minutes since its last start: no baseline"
        else:
            row.update({"rss_mb_at_minute_10": base[1]["rss_mb"], "open_files_at_minute_10": base[1]["open_files"],
                        "minutes_measured": round((last_t - base[0]) / 60, 1),
                        "growth": round(last["rss_mb"] / base[1]["rss_mb"] - 1, 3)})
        out[role] = row
    return out


def summarize(record: dict[str, Any]) -> dict[str, Any]:
    """The checks of the issue's targets, each {check, ok, detail}, and the verdict line."""
    start = record["started"]
    windows = latency_windows(record["calls"], start, record["windows"])
    memory = memory_growth(record["samples"], record["starts"])
    learned, completed = record["learned"], [c["job_id"] for c in record["completed"]]
    missing = [j for j in completed if str(j) not in learned and j not in learned]
    twice = {j: runs for j, runs in learned.items() if len(runs) > 1}
    errors = [e for w in windows for e in w["errors"]] + record["health_errors"]
    checks = [
        {"check": "every completed job learned from", "ok": not missing,
         "detail": f"{len(completed) - len(missing)} of {len(completed)}" + (f"; missing {missing}" if missing else "")},
        {"check": "no job trained twice", "ok": not twice, "detail": f"{twice or 'none'}"},
        {"check": "no error answered to a valid request", "ok": not errors,
         "detail": f"{len(errors)} errors" + (f", first: {errors[0]}" if errors else "") +
                   f"; {sum(len(w['errors']) + w['calls'] for w in windows)} AI-tools calls"},
    ]
    for role, row in memory.items():
        growth = row.get("growth")  # None: too short to judge (n/a, neither passed nor failed)
        checks.append({"check": f"{role}: RSS at most 10 % above minute 10", "ok": None if growth is None else growth <= 0.10,
                       "detail": row.get("verdict") or f"{row['rss_mb_at_minute_10']} -> {row['rss_mb_last']} MB "
                                                       f"({growth:+.1%} over {row['minutes_measured']} min); open files "
                                                       f"{row['open_files_at_minute_10']} -> {row['open_files_last']}"})
    full = [w for w in windows if w["calls"] and w["minutes"][1] * 60 <= record["seconds"] + 1]
    if len(full) >= 2:
        ratio = full[-1]["p95_s"] / full[0]["p95_s"]
        checks.append({"check": "latency p95, last window at most 1.2x the first", "ok": ratio <= 1.2,
                       "detail": f"{full[0]['p95_s']} s -> {full[-1]['p95_s']} s ({ratio:.2f}x)"})
    for fault in record["faults"]:
        for hold in fault["holds"]:
            checks.append({"check": f"{fault['fault']}: {hold['check']}", "ok": hold["ok"], "detail": hold["detail"]})
    failed = [c for c in checks if c["ok"] is False]
    judged = [c for c in checks if c["ok"] is not None]
    verdict = (f"soak {record['seconds'] / 60:.0f} min: {'PASS' if not failed else 'FAIL'}, "
               f"{len(judged) - len(failed)} of {len(judged)} checks hold; {len(completed)} jobs completed, "
               f"{len(learned)} learned; {sum(w['calls'] for w in windows)} AI-tools calls"
               + (f"; failed: {'; '.join(c['check'] for c in failed)}" if failed else ""))
    triggers: dict[str, int] = {}
    for run in record["runs"]:
        kind = "retry" if run["trigger"].startswith("retry") else run["trigger"]
        triggers[kind] = triggers.get(kind, 0) + 1
    webhooks = {"deliveries_by_status": record["deliveries"], "runs_by_trigger": triggers,
                "runs_by_state": {st: sum(r["state"] == st for r in record["runs"]) for st in
                                  ("succeeded", "failed", "interrupted", "queued", "running")}}
    return {"latency_windows": windows, "memory": memory, "webhooks": webhooks, "checks": checks, "verdict": verdict}


def plot(record: dict[str, Any], summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = record["started"]
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    roles = sorted({r for s in record["samples"] for r in s.get("processes", {})})
    for role in roles:
        points = [((s["t"] - start) / 60, s["processes"][role]["rss_mb"]) for s in record["samples"]
                  if s.get("processes", {}).get(role)]
        if points:
            axes[0].plot(*zip(*points), marker=".", label=role)
    axes[0].set_ylabel("RSS (MB)")
    axes[0].legend(fontsize=7, ncol=2)
    rows = [w for w in summary["latency_windows"] if w["calls"]]
    mids = [sum(w["minutes"]) / 2 for w in rows]
    axes[1].plot(mids, [w["p50_s"] for w in rows], marker="o", label="p50")
    axes[1].plot(mids, [w["p95_s"] for w in rows], marker="o", label="p95")
    axes[1].set_ylabel("AI-tools call (s)")
    axes[1].legend(fontsize=7)
    done = sorted((c["at"] - start) / 60 for c in record["completed"])
    axes[2].step(done, range(1, len(done) + 1), where="post", label="jobs completed")
    learned = sorted((t - start) / 60 for t in record["learned_at"])
    axes[2].step(learned, range(1, len(learned) + 1), where="post", label="runs succeeded")
    axes[2].set_ylabel("count")
    axes[2].set_xlabel("minutes")
    axes[2].legend(fontsize=7)
    for ax in axes:
        for w in record["windows"]:
            ax.axvspan((w["start"] - start) / 60, ((w["end"] or w["start"]) - start) / 60, color="grey", alpha=0.15)
    for number, w in enumerate(record["windows"], 1):
        axes[0].annotate(str(number), ((w["start"] - start) / 60, 1), xycoords=("data", "axes fraction"),
                         fontsize=7, va="top")
    axes[0].set_title("grey: fault windows, numbered in the order of the report", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
