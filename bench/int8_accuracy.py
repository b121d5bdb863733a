"""What int8 costs in accuracy: `cpu` models trained on generated people, each quantized and checked
at registration as the trainer does (cals.model.quantize), one model per seed.

    python -m bench.int8_accuracy [--seeds 3] [--iters 600] [--out bench/results/int8-accuracy.json]

Each seed generates its own 400-frame training set; all share one 100-frame test set (seed 2). The
version's `int8.json` is the registration's own check: spine AP of the fp32 and the int8 model on
the test set's boxes, and the median distance between their points. About 2 minutes a seed on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def run(seeds: int, iters: int, work: Path) -> list[dict]:
    from cals.model.train import train
    from cals.registry import Registry
    from cals.synth import generate_dataset

    test = work / "test"
    generate_dataset(test, 100, seed=2, progress=False)
    reports = []
    for seed in range(1, seeds + 1):
        data = work / f"train-{seed}"
        generate_dataset(data, 400, seed=10 + seed, progress=False)
        version = train(data, Registry(work / f"registry-{seed}"), iters=iters, val_root=test, progress=False)
        reports.append({"seed": seed, **version.meta["int8"]})
        print(json.dumps(reports[-1]), flush=True)
    return reports


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--iters", type=int, default=600, help="training iterations per model")
    p.add_argument("--out", default="bench/results/int8-accuracy.json")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cals-bench-int8-") as tmp:
        reports = run(args.seeds, args.iters, Path(tmp))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(reports, indent=2))
    for r in reports:
        print(f"seed {r['seed']}: spine AP {r['spine_ap_fp32']:.4f} fp32, {r['spine_ap_int8']:.4f} int8 "
              f"(drop {r['spine_ap_drop']:+.4f}); median point moved {r['median_px']:.3f} px; "
              f"{'approved' if r['approved'] else 'refused: ' + r['reason']}")
    return reports


if __name__ == "__main__":
    main()
