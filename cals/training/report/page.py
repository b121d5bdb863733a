"""The loop report as one HTML page: readings, plots and tables, rendered on the server.

No JavaScript and nothing fetched: the page is a file a team lead can save or mail.
"""
from __future__ import annotations

from html import escape
from typing import Any

from cals.training.report.plots import plots
from cals.training.report.readings import duration, readings

_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 5px;text-align:right}th{font-weight:600;font-size:12px}
th{background:#f3f3f3}td.l,th.l{text-align:left}.plots{display:grid;grid-template-columns:1fr 1fr;gap:1em}
.plots figure{margin:0}.plots figcaption{font-size:13px}.note{background:#fff6d6;padding:.4em .8em}
.open{color:#a60}details{margin:.3em 0}"""


def render_page(report: dict[str, Any]) -> str:
    groups = report["schema"]["groups"]
    body = [f"<h1>What the loop did on your frames</h1><p>Generated {escape(report['generated_at'])}. "
            "Definitions of every number: the trainer's README, “Loop report”.</p>"]
    body += [f'<p class="note">{escape(n)}</p>' for n in _notes(report)]
    learned = [r for r in report["rounds"] if r["frames"]]
    if not learned:
        body.append(_empty(report))
    else:
        said = readings(report)
        body.append(f"<h2>Is the loop working for us?</h2><p><b>{escape(said['work'])}</b></p>")
        figures = plots(report)
        body.append('<div class="plots">' + "".join(
            f"<figure>{svg}<figcaption>{escape(said[name])}</figcaption></figure>" for name, svg in figures.items())
            + "</div>")
    if report["rounds"]:
        body.append("<h2>Rounds</h2>" + _rounds_table(report["rounds"], groups))
        body += [_jobs(r, groups) for r in report["rounds"] if r["jobs"]]
    body += [f"<p>Round {s['number']} (task {s['task_id']}) is skipped: {escape(s['reason'])}.</p>"
             for s in report["skipped"]]
    return ("<!doctype html><html><head><meta charset='utf-8'><title>CALS loop report</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>")


def _notes(report: dict) -> list[str]:
    notes = []
    if report.get("cvat_note"):
        notes.append(f"{report['cvat_note']}: rounds' open jobs and deleted tasks are not known; "
                     "a round counts as open until the trainer has learned all its jobs.")
    notes += [f"Skipped an unreadable record: {u}" for u in report.get("unreadable", [])]
    return notes


def _empty(report: dict) -> str:
    opened = [r for r in report["rounds"]]
    now = (f"Round {opened[-1]['number']} is open (task {opened[-1]['task_id']}): {opened[-1]['jobs_learned']} of "
           f"{opened[-1]['jobs_total']} jobs learned." if opened else "No round is open yet: the sampler opens "
           "round 1 when asked (`cals round`), or by itself once a model is promoted.")
    return ("<h2>No completed job yet</h2><p>" + escape(now) + "</p><p>When annotators complete a job of a round and "
            "the trainer has learned it, this page shows, per round and per job: how much of the pre-annotation "
            "people moved, the model's accuracy on your frames, how well the points to check were chosen, the "
            "work saved against labelling from scratch, how long each round took, and the promotion gate's "
            "decision.</p>")


def _rounds_table(rounds: list[dict], groups: list[str]) -> str:
    per = " / ".join(groups)
    head = ["round", "state", "model", "frames", "people", f"points ({per})", f"moved ({per})",
            f"mean shift px ({per})", f"AP ({per})", f"AP random picks ({per})", f"flag recall ({per})",
            f"flag workload ({per})", "work saved", "opened → done", "done → promoted", "gate"]
    rows = []
    for r in rounds:
        flags = r["flags"] or {}
        cells = [str(r["number"]), _state(r), escape(str(r["version"])), r["frames"], r["people"],
                 _each(groups, lambda g: str(r["points"][g])),
                 _each(groups, lambda g: _pct(r["effort"][g]["moved_share"])),
                 _each(groups, lambda g: _num(r["effort"][g]["mean_displacement_px"], 1)),
                 _each(groups, lambda g: _num(r["ap"]["all"][g])),
                 _each(groups, lambda g: _num((r["ap"]["random"] or {}).get(g))) + f"<br><small>{r['ap']['random_frames']} frames</small>",
                 _each(groups, lambda g: _pct((flags.get(g) or {}).get("recall"))),
                 _each(groups, lambda g: _pct((flags.get(g) or {}).get("workload"))),
                 _pct(r["work"]["saved_share"]), _minutes(r["times"]["open_to_done_s"]),
                 _minutes(r["times"]["done_to_promoted_s"]), _gate(r["gate"])]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return _table(head, rows)


def _jobs(r: dict, groups: list[str]) -> str:
    per = " / ".join(groups)
    head = ["job", "frames", "people", f"moved ({per})", f"AP ({per})", "work saved", "completed", "run"]
    rows = ["<tr>" + "".join(f"<td>{c}</td>" for c in [
        j["job_id"], j["frames"], j["people"], _each(groups, lambda g: _pct(j["effort"][g]["moved_share"])),
        _each(groups, lambda g: _num(j["ap"]["all"][g])), _pct(j["work"]["saved_share"]),
        escape(j["completed_at"] or "n/a"), j["run"] or "n/a"]) + "</tr>" for j in r["jobs"]]
    return f"<details><summary>Round {r['number']}: {len(r['jobs'])} job(s) learned</summary>{_table(head, rows)}</details>"


def _table(head: list[str], rows: list[str]) -> str:
    return "<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"


def _each(groups: list[str], value) -> str:
    return " / ".join(value(g) for g in groups)


def _state(r: dict) -> str:
    done = f"{r['jobs_learned']}/{r['jobs_total']} jobs learned"
    cls = "" if r["state"] == "complete" else ' class="open"'
    return f"<span{cls}>{escape(r['state'])}</span><br><small>{done}</small>"


def _gate(gate: dict | None) -> str:
    if not gate:
        return "n/a"
    verdict = "promoted" if gate["promoted"] else "kept the current model"
    metric = escape(gate.get("metric") or "metric")
    return (f"<span title='{escape(gate['reason'] or '')}'>{verdict}<br><small>{metric} {_num(gate['candidate'], 3)} "
            f"vs {_num(gate['current'], 3)}</small></span>")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _minutes(seconds: float | None) -> str:
    return "n/a" if seconds is None else duration(seconds)
