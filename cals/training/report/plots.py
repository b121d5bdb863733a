"""The loop report's four plots, as inline SVG (matplotlib, no JavaScript)."""
from __future__ import annotations

import io
from typing import Any, Callable

GROUP_COLOURS = {"body": "tab:green", "spine": "tab:orange"}


def _svg(draw: Callable[[Any], None], *, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5.2, 2.9))
    try:
        draw(ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # 50 rounds: a few ticks, not 50 labels
        lo, hi = ax.get_xlim()
        if hi - lo < 2:  # one round: whole numbers around it, not ±0.05
            ax.set_xlim((lo + hi) / 2 - 1, (lo + hi) / 2 + 1)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left", framealpha=0.8)  # a fixed place: "best" costs a search
        fig.subplots_adjust(left=0.12, right=0.98, bottom=0.17, top=0.9)
        out = io.StringIO()
        fig.savefig(out, format="svg")
    finally:
        plt.close(fig)
    text = out.getvalue()
    return text[text.index("<svg"):]


def plots(report: dict[str, Any]) -> dict[str, str]:
    """name -> SVG; empty before the first round with learned labels."""
    rounds = [r for r in report["rounds"] if r["frames"]]
    if not rounds:
        return {}
    groups = report["schema"]["groups"]
    numbers = [r["number"] for r in rounds]
    return {"accuracy": _svg(lambda ax: _accuracy(ax, rounds, groups),
                             title="Pre-annotation AP on your frames"),
            "moved": _svg(lambda ax: _per_round(ax, numbers, groups,
                                                lambda r, g: r["effort"][g]["moved_share"], rounds, "share moved"),
                          title="Points people moved"),
            "flags": _svg(lambda ax: _flags(ax, rounds, groups), title="Points to check: recall and workload"),
            "time": _svg(lambda ax: _time(ax, rounds), title="Time per round")}


def _accuracy(ax, rounds: list[dict], groups: list[str]) -> None:
    for g in groups:
        pts = [(r["labelled_frames_before"], _ap(r, g)) for r in rounds]
        pts = [(x, y) for x, y in pts if x is not None and y is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", color=GROUP_COLOURS.get(g), label=g)
    ax.set_xlabel("frames labelled (that the pre-annotating model learned from)")
    ax.set_ylabel("OKS AP")
    ax.set_ylim(0, 1)


def _ap(r: dict, group: str) -> float | None:
    """The random picks' AP when the round has them (unbiased), else all frames'."""
    ap = r["ap"]["random"] or r["ap"]["all"]
    return ap.get(group)


def _per_round(ax, numbers: list[int], groups: list[str], value, rounds: list[dict], ylabel: str) -> None:
    width = 0.8 / max(len(groups), 1)
    for i, g in enumerate(groups):
        ys = [value(r, g) or 0.0 for r in rounds]
        ax.bar([n + (i - (len(groups) - 1) / 2) * width for n in numbers], ys, width, label=g,
               color=GROUP_COLOURS.get(g))
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)


def _flags(ax, rounds: list[dict], groups: list[str]) -> None:
    flagged = [r for r in rounds if r["flags"]]
    for g in groups:
        colour = GROUP_COLOURS.get(g)
        ax.plot([r["number"] for r in flagged], [_nan(r["flags"][g]["recall"]) for r in flagged], marker="o",
                color=colour, label=f"{g} recall")
        ax.plot([r["number"] for r in flagged], [_nan(r["flags"][g]["workload"]) for r in flagged], marker="s",
                linestyle="--", color=colour, label=f"{g} workload")
    ax.set_xlabel("round")
    ax.set_ylabel("share")
    ax.set_ylim(0, 1.05)


def _time(ax, rounds: list[dict]) -> None:
    numbers = [r["number"] for r in rounds]
    keys = ("open_to_done_s", "done_to_promoted_s")
    longest = max((r["times"][k] or 0) for r in rounds for k in keys)
    unit, per = ("hours", 3600) if longest > 3 * 3600 else ("minutes", 60)
    for offset, key, label, colour in ((-0.2, keys[0], "opened → last job completed", "tab:blue"),
                                       (0.2, keys[1], "completed → model promoted", "tab:purple")):
        ax.bar([n + offset for n in numbers], [(r["times"][key] or 0) / per for r in rounds], 0.4,
               label=label, color=colour)
    ax.set_xlabel("round")
    ax.set_ylabel(unit)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value
