"""What each sampling strategy picks: pose family, hidden spine points, occluders, blur, box size.

A strategy's score says how well it did; this says why, by comparing the frames it picked with
the pool it picked them from. The synthetic generator records `pose_family` and `occluder` per
annotation and `blur` per image; a user's COCO file may lack them, and then those attributes are
None and left out of the averages instead of counting as "no".
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Callable, Iterable

from cals.data.coco import annotations_by_image, validate_coco
from cals.errors import CalsError
from cals.schema import Schema

POOL = "pool"


def frame_attributes(coco: dict, schema: Schema) -> dict[str, dict]:
    """file_name -> {people, families, hidden_spine, occluder, blur, box} for every image.

    families: each person's pose family (None when unrecorded); hidden_spine: spine points with
    visibility != 2 summed over the frame's people; occluder: any person had an occluder drawn
    over it; blur: the image was blurred; box: sqrt of the largest person's bbox area (px)."""
    validate_coco(coco, schema)
    spine = schema.groups.get("spine")
    by_image = annotations_by_image(coco)
    recorded = any("occluder" in a for a in coco["annotations"])
    out: dict[str, dict] = {}
    for image in coco["images"]:
        name = image["file_name"]
        if name in out:
            raise CalsError(f"two images share the file name {name!r}; picks are reported by file name")
        anns = by_image.get(image["id"], [])
        out[name] = {
            "people": len(anns),
            "families": _families(image, anns),
            "hidden_spine": None if spine is None else sum(
                1 for a in anns for i in spine if a["keypoints"][3 * i + 2] != 2),
            "occluder": _occluded(anns) if recorded else None,
            "blur": None if image.get("blur") is None else bool(image["blur"] > 0),
            "box": max((math.sqrt(a["bbox"][2] * a["bbox"][3]) for a in anns), default=None),
        }
    return out


def _occluded(anns: list[dict]) -> bool | None:
    """Any person occluded; None when one of them does not record it."""
    if not all("occluder" in a for a in anns):
        return None
    return any(bool(a["occluder"]) for a in anns)


def _families(image: dict, anns: list[dict]) -> list[str] | None:
    """Per-person families from the annotations, else the image's `pose_families`, else None."""
    if all(a.get("pose_family") for a in anns):
        return [str(a["pose_family"]) for a in anns]
    listed = image.get("pose_families")
    return [str(f) for f in listed] if isinstance(listed, list) else None


def picks_summary(picks: dict[str, list[str]], attrs: dict[str, dict], families: list[str],
                  pool: Iterable[str] | None = None) -> dict[str, dict]:
    """strategy -> row over its picked frames, plus a last row "pool" over the frames it picked from.

    A frame picked twice (by two seeds) counts twice. Family shares are over the people in the
    frames (whose family is known); the other shares and means over the frames that record them.
    `pool` defaults to every frame in attrs with a person in it, the frames a sampler can pick."""
    if POOL in picks:
        raise CalsError(f"a strategy cannot be named {POOL!r}: that row is the pool's")
    rows = {}
    for strategy, names in picks.items():
        unknown = [n for n in names if n not in attrs]
        if unknown:
            raise CalsError(f"strategy {strategy!r} picked {len(unknown)} frame(s) not in the pool, "
                            f"e.g. {unknown[0]!r}")
        rows[strategy] = _row([attrs[n] for n in names], families)
    frames = [a for a in attrs.values() if a["people"]] if pool is None else [attrs[n] for n in pool]
    rows[POOL] = _row(frames, families)
    return rows


def _row(frames: list[dict], families: list[str]) -> dict[str, Any]:
    people = [f for a in frames for f in (a["families"] or [])]
    return {
        "frames": len(frames),
        "families": {f: people.count(f) / len(people) if people else None for f in families},
        "hidden_spine": _mean(a["hidden_spine"] for a in frames),
        "occluder": _mean(a["occluder"] for a in frames),
        "blur": _mean(a["blur"] for a in frames),
        "box": _median(a["box"] for a in frames),
    }


def _mean(values: Iterable[Any]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _median(values: Iterable[Any]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return statistics.median(known) if known else None


def _percent(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _fixed(digits: int) -> Callable[[float | None], str]:
    return lambda v: "-" if v is None else f"{v:.{digits}f}"


def _table(summary: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """Column headers and one row of cells per strategy, the pool last: what both formats show."""
    families = list(next(iter(summary.values()))["families"]) if summary else []
    columns: list[tuple[str, Callable[[dict], str]]] = [("frames", lambda r: str(r["frames"]))]
    columns += [(f, lambda r, f=f: _percent(r["families"][f])) for f in families]
    columns += [("hidden spine", lambda r: _fixed(1)(r["hidden_spine"])),
                ("occluder", lambda r: _percent(r["occluder"])), ("blurred", lambda r: _percent(r["blur"])),
                ("box px", lambda r: _fixed(0)(r["box"]))]
    order = [k for k in summary if k != POOL] + [k for k in summary if k == POOL]
    rows = [[name] + [cell(summary[name]) for _, cell in columns] for name in order]
    return ["strategy"] + [h for h, _ in columns], rows


def format_picks_table(summary: dict[str, dict]) -> str:
    """Fixed-width text, one line per strategy and the pool: for a terminal or a README code block."""
    header, rows = _table(summary)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = [[c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
             for r in [header] + rows]
    return "\n".join("  ".join(line).rstrip() for line in lines) + "\n"


def picks_markdown(summary: dict[str, dict]) -> str:
    """The same table as a Markdown pipe table."""
    header, rows = _table(summary)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
