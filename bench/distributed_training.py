"""Training throughput with 1 and 2 processes (torchrun, gloo on a CPU host): images/s and the ratio.

    python -m bench.distributed_training [--procs 1,2] [--configs cpu,rtmpose-m] [--repeats 3] [--out FILE]

Each measurement is a `cals train` subprocess (2 processes: `python -m torch.distributed.run
--standalone --nproc_per_node 2 -m cals train`) on one generated dataset, timed by the Runner's own
clock (meta.json's train_seconds: start-up, checkpoint loading and registration excluded). The batch
size is per process, so 2 processes train on twice the images per iteration: images/s counts them
all. Runs alternate 1, 2, 1, 2, ... so both see the same machine load; the ratio is per repeat, and
the median and range are printed. Figures from one run only (this machine is shared).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCHEDULE = {"cpu": {"iters": 40, "batch": 16}, "rtmpose-m": {"iters": 8, "batch": 8}}


def train_once(data: Path, work: Path, config: str, procs: int, iters: int, batch: int) -> dict:
    registry = work / f"registry-{config}-{procs}-{time.monotonic_ns()}"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] \
        if procs > 1 else [sys.executable]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMP_NUM_THREADS")}
    start = time.perf_counter()
    done = subprocess.run([*launcher, "-m", "cals", "train", "--data", str(data), "--registry", str(registry),
                           "--config", config, "--iters", str(iters), "--batch-size", str(batch), "--progress-jsonl"],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{config} with {procs} process(es) failed:\n{done.stderr[-2000:]}")
    version = json.loads(done.stdout.strip().splitlines()[-1])["version"]
    meta = json.loads((registry / "versions" / version / "meta.json").read_text())
    images = meta["iterations"] * meta["batch_size"] * meta["world_size"]
    return {"config": config, "procs": procs, "world_size": meta["world_size"], "images": images,
            "train_s": meta["train_seconds"], "wall_s": round(wall, 1),
            "images_per_s": round(images / meta["train_seconds"], 2)}


def summary(runs: list[dict], config: str, procs: list[int]) -> dict:
    by = {p: [r["images_per_s"] for r in runs if r["config"] == config and r["procs"] == p] for p in procs}
    out = {"config": config, **{f"images_per_s_{p}": statistics.median(v) for p, v in by.items()}}
    if len(procs) == 2:
        ratios = [b / a for a, b in zip(by[procs[0]], by[procs[1]])]
        out.update(ratio=round(statistics.median(ratios), 2), ratio_min=round(min(ratios), 2),
                   ratio_max=round(max(ratios), 2), repeats=len(ratios))
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="bench.distributed_training", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--procs", default="1,2")
    p.add_argument("--configs", default="cpu,rtmpose-m")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--images", type=int, default=200, help="generated training images")
    p.add_argument("--out", help="also write the JSON here")
    a = p.parse_args()
    from cals.synth import generate_dataset

    procs = [int(n) for n in a.procs.split(",")]
    work = Path(tempfile.mkdtemp(prefix="cals-bench-dist-"))
    data = work / "data"
    generate_dataset(data, a.images, seed=5, progress=False)
    runs = []
    for config in a.configs.split(","):
        for _ in range(a.repeats):
            for n in procs:
                runs.append(train_once(data, work, config, n, **SCHEDULE[config]))
                print(json.dumps(runs[-1]), flush=True)
    doc = {"cpus": len(os.sched_getaffinity(0)), "runs": runs,
           "summary": [summary(runs, c, procs) for c in a.configs.split(",")]}
    for line in doc["summary"]:
        print(json.dumps(line), flush=True)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
