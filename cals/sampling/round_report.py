"""A round's ranking report: ranking.json, ranking.csv and contact.png (top frames, predicted skeletons)."""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from cals.schema import Schema

log = logging.getLogger(__name__)
SHEET_FRAMES = 12


def write_ranking(folder: Path, ranking: Sequence[dict]) -> list[Path]:
    """ranking: [{"rank", "name", "key", "score", "scores": {strategy: value}}], best first."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ranking.json").write_text(json.dumps(list(ranking), indent=1))
    strategies = sorted({s for r in ranking for s in r["scores"]})
    with open(folder / "ranking.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", "frame", "score", *strategies])
        for r in ranking:
            w.writerow([r["rank"], r["name"], f"{r['score']:.6g}", *(f"{r['scores'].get(s, ''):.6g}"
                                                                      if s in r["scores"] else "" for s in strategies)])
    return [folder / "ranking.json", folder / "ranking.csv"]


def contact_sheet(path: Path, frames: Sequence[dict], schema: Schema, *, columns: int = 4) -> Path:
    """frames: [{"image": BGR array, "name", "rank", "score", "people": [{"keypoints": (K, 2)}]}]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = list(frames)[:SHEET_FRAMES]
    rows = max(1, -(-len(frames) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 2.4 * rows), squeeze=False)
    edges = [(schema.index(a), schema.index(b)) for a, b in schema.edges]
    spine = set(schema.groups.get("spine", []))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, f in zip(axes.ravel(), frames):
        ax.imshow(f["image"][:, :, ::-1])
        for person in f["people"]:
            kp = np.asarray(person["keypoints"], float)
            for a, b in edges:
                colour = "orange" if a in spine and b in spine else "lime"
                ax.plot(kp[[a, b], 0], kp[[a, b], 1], color=colour, linewidth=1)
        h, w = f["image"].shape[:2]
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(f"#{f['rank']} {f['name'][:18]} {f['score']:.3g}", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
