"""Benchmark: wall time of one trainer round (export + merge + fine-tune + evaluate both + promote)
for N new images, through cvat-sdk against the CVAT-compatible test server.

    python -m bench.trainer_round [--images 200] [--iters 100] [--base-iters 30] [--out trainer-bench.json]

The base model that the round fine-tunes from is trained first (not timed). The machine is
shared: report the numbers of one run together with the load average printed next to them.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from cals.cvat.client import CvatSettings, connect
from cals.model.train import train
from cals.registry import Registry
from cals.training.queue import RunQueue
from cals.schema import load_schema
from cals.synth import generate_dataset
from cals.training.run import RunSettings, execute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--base-iters", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("trainer-bench.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="cals-trainer-bench-") as tmp:
        result = bench(Path(tmp), args.images, args.iters, args.base_iters)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def bench(tmp: Path, images: int, iters: int, base_iters: int) -> dict:
    from tests.cvat_server import CvatTestServer  # stands in for CVAT; the round uses cvat-sdk only
    from tests.trainer_helpers import make_task

    schema = load_schema()
    generate_dataset(tmp / "frames", images, seed=5, progress=False)
    registry = Registry(tmp / "registry")
    registry.promote(train(tmp / "frames", registry, iters=base_iters, progress=False).id, reason="bench base")
    with CvatTestServer() as server:
        cvat = CvatSettings(server.url, server.user, server.password, poll_seconds=0.05)
        client = connect(cvat)
        project = client.projects.create({"name": "bench", "labels": [schema.cvat_label()]})
        names = sorted(p.name for p in (tmp / "frames" / "images").iterdir())
        task = make_task(client, project.id, tmp / "frames", names, tmp)
        job_ids = [j.id for j in task.get_jobs()]
        client.close()
        settings = RunSettings(cvat=cvat, registry=registry, data_root=tmp / "data", schema=schema, iters=iters)
        run = RunQueue(tmp / "q.sqlite3").request_run({"jobs": job_ids}, trigger="bench")
        marks: dict[str, float] = {}
        start = time.perf_counter()
        result = execute(run, settings, lambda phase, info: marks.setdefault(phase, time.perf_counter() - start))
        total = time.perf_counter() - start
    phases = sorted(marks.items(), key=lambda kv: kv[1]) + [("end", total)]
    return {"images": images, "iterations": iters, "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
            "round_seconds": round(total, 1),
            "phase_seconds": {p: round(phases[i + 1][1] - t, 1) for i, (p, t) in enumerate(phases[:-1])},
            "promoted": result["model"]["promoted"], "reason": result["model"]["reason"]}


if __name__ == "__main__":
    main()
