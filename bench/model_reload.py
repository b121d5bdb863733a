"""Benchmark: a serving process's memory across model promotions, with and without handing the old
model's heap back (cals/model/memory.py).

    python -m bench.model_reload [--config rtmpose-m] [--promotions 20] [--out FILE]

A registry with two versions of `--config` (random weights) is promoted back and forth; after each
promotion the process serves through `ModelWatcher` as the function's workers and the sampler do
(one prediction). Each mode runs in a fresh process of its own, one after the other in this run:
`release` is the product, `kept` the same with the release turned off. Reported: RSS after each
promotion, and the growth from the first to the last.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def serve(root: Path, promotions: int, release: bool) -> list[float]:
    """RSS (MB) after each promotion, in this process."""
    import numpy as np

    import cals.serving.watcher as watcher
    from cals.model.predict import Predictor
    from cals.registry import Registry
    from cals.serving.watcher import ModelWatcher

    if not release:
        watcher.release_freed_memory = lambda: False
    registry = Registry(root / "registry")
    versions = [v.id for v in registry.list()]
    models = ModelWatcher(registry, lambda v: Predictor(v.path, device="cpu", version_id=v.id))
    image, boxes = np.zeros((480, 640, 3), np.uint8), np.array([[100, 50, 300, 450]], np.float32)
    out = []
    for i in range(promotions):
        registry.promote(versions[i % 2], reason="bench")
        models.get().predict(image, boxes)
        out.append(round(_rss_mb(), 1))
    return out


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="rtmpose-m")
    parser.add_argument("--promotions", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/results/model-reload.json"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # ROOT release|kept: one measurement
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(serve(Path(args.child[0]), args.promotions, args.child[1] == "release")))
        return {}
    from bench.serving import version_folder
    from cals.model.train import version_files
    from cals.registry import Registry

    with tempfile.TemporaryDirectory(prefix="cals-bench-reload-") as tmp:
        root = Path(tmp)
        registry = Registry(root / "registry")
        for n in range(2):
            folder = version_folder(args.config, root / f"v{n}")
            registry.add(version_files(folder), meta={"config": args.config})
        result = {"config": args.config, "promotions": args.promotions,
                  "command": " ".join(["python -m bench.model_reload", *(sys.argv[1:] if argv is None else argv)])}
        for mode in ("release", "kept"):
            done = subprocess.run([sys.executable, "-m", "bench.model_reload", "--config", args.config,
                                   "--promotions", str(args.promotions), "--child", str(root), mode],
                                  capture_output=True, text=True, check=True)
            rss = json.loads(done.stdout.strip().splitlines()[-1])
            result[mode] = {"rss_mb": rss, "growth_mb": round(rss[-1] - rss[0], 1)}
            print(f"{mode:8s} RSS {rss[0]:.0f} -> {rss[-1]:.0f} MB over {args.promotions} promotions "
                  f"(max {max(rss):.0f})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written: {args.out}")
    return result


if __name__ == "__main__":
    main()
