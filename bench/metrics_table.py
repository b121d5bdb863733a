"""Print a metrics document (from `cals evaluate`) as a small table."""
from __future__ import annotations

import json
import sys
from typing import Any


def _fmt(value: Any) -> str:
    return f"{value:6.3f}" if isinstance(value, (int, float)) else "     -"


def format_metrics(metrics: dict[str, Any]) -> str:
    rows = [f"{'':12} {'AP':>6} {'AP50':>6} {'AR':>6} {'PCK':>6}"]
    rows.append("overall      " + " ".join(_fmt(metrics["overall"].get(k))
                                          for k in ("AP", "AP50", "AR", "PCK@0.05")))
    for group, m in metrics.get("groups", {}).items():
        rows.append(f"{group:12} " + " ".join(_fmt(m.get(k)) for k in ("AP", "AP50", "AR", "PCK@0.05")))
    families = metrics.get("families") or {}
    if families:
        rows.append(f"\n{'family':12} {'AP':>6} {'body':>6} {'spine':>6} {'PCK':>6}")
        for fam, m in families.items():
            rows.append(f"{fam:12} " + " ".join(_fmt(m.get(k)) for k in ("AP", "body_AP", "spine_AP", "PCK@0.05")))
    return "\n".join(rows)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(format_metrics(json.load(f)))
