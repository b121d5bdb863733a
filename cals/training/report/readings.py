"""One line in words under each plot of the loop report: what a team lead reads off it."""
from __future__ import annotations

from statistics import median
from typing import Any


def readings(report: dict[str, Any]) -> dict[str, str]:
    rounds = [r for r in report["rounds"] if r["frames"]]
    if not rounds:
        return {}
    first, last = rounds[0], rounds[-1]
    group = "spine" if "spine" in report["schema"]["groups"] else report["schema"]["groups"][0]
    span = f"over {len(rounds)} round{'s' if len(rounds) > 1 else ''}"
    return {"accuracy": _accuracy(first, last, group, span), "moved": _moved(rounds, group),
            "flags": _flags(last, group), "time": _time(rounds), "work": _work(rounds)}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _accuracy(first: dict, last: dict, group: str, span: str) -> str:
    def ap(r):
        return (r["ap"]["random"] or r["ap"]["all"]).get(group)
    which = "its random picks" if last["ap"]["random"] else "all its frames (no random picks: a biased sample)"
    if first is last:
        return f"The pre-annotating model's {group} AP on round {last['number']}'s frames is {_num(ap(last))}, on {which}."
    return (f"The pre-annotating model's {group} AP on your frames went from {_num(ap(first))} (round "
            f"{first['number']}) to {_num(ap(last))} (round {last['number']}) {span}; the last round's figure is on {which}.")


def _moved(rounds: list[dict], group: str) -> str:
    shares = ", then ".join(_pct(r["effort"][group]["moved_share"]) for r in rounds[-4:])
    return f"Annotators moved {shares} of {group} points (rounds {rounds[-4:][0]['number']}–{rounds[-1]['number']})."


def _flags(last: dict, group: str) -> str:
    flags = (last["flags"] or {}).get(group)
    if not flags:
        return f"Round {last['number']} has no recorded points-to-check threshold."
    return (f"In round {last['number']}, the flags caught {_pct(flags['recall'])} of the {group} points people moved "
            f"({flags['caught']} of {flags['moved']}), flagging {_pct(flags['workload'])} of the {group} points "
            f"shown (threshold {flags['threshold']:g}).")


def _time(rounds: list[dict]) -> str:
    done = [r["times"]["open_to_done_s"] for r in rounds if r["times"]["open_to_done_s"] is not None]
    promoted = [r["times"]["done_to_promoted_s"] for r in rounds if r["times"]["done_to_promoted_s"] is not None]
    parts = []
    if done:
        parts.append(f"a round took {duration(median(done))} from opening to its last completed job")
    if promoted:
        parts.append(f"a completed round became a promoted model in {duration(median(promoted))}")
    return ("Median: " + "; ".join(parts) + ".") if parts else "No round has both its times yet."


def _work(rounds: list[dict]) -> str:
    done = sum(r["work"]["placed_or_moved"] for r in rounds)
    scratch = sum(r["work"]["from_scratch"] for r in rounds)
    if not scratch:
        return "No labelled point yet."
    return (f"People placed or moved {done} of the {scratch} points they labelled: without pre-annotations "
            f"they would have placed all {scratch} ({_pct(1 - done / scratch)} saved).")


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
