"""Benchmark: wall time of one trainer round (export + merge + fine-tune + evaluate both + promote)
for N new images, through cvat-sdk against the CVAT-compatible test server, with the pool set off
(human labels alone), with the pool's labels (a pool of P frames, the default), and with pseudo-labels
too (read from the sampler's cache), each from the same registry; and what the sampler's prediction
of the pool costs (it runs after a promotion, not in the round).

    python -m bench.trainer_round [--images 200] [--pool 1000] [--iters 100] [--base-iters 600]
                                  [--config cpu|rtmpose-m] [--pseudo-threshold 0.6] [--out trainer-bench.json]

The base model that the rounds fine-tune from is trained first (not timed), on the pool's frames with
their spine points, as a model some rounds in would know them: a body-only model has no spine point
confident enough to become a pseudo-label, and its "pseudo" round would time nothing. The machine is
shared: report the ratio of one run together with the load average printed next to it.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from cals.cvat.client import CvatSettings, connect
from cals.model.predict import Predictor
from cals.model.train import train
from cals.registry import Registry
from cals.sampling.cache import ScoreCache, cache_file
from cals.data.pool import LocalPool
from cals.sampling.scoring import Scorer
from cals.simulate.data import body_only
from cals.training.queue import RunQueue
from cals.schema import load_schema
from cals.synth import generate_dataset
from cals.training.pool_set import PoolTraining
from cals.training.run import RunSettings, execute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--base-iters", type=int, default=600,
                        help="the base model's iterations: enough that spine points pass the pseudo-label threshold")
    parser.add_argument("--pool", type=int, default=1000, help="unlabelled pool frames of the pool-set round")
    parser.add_argument("--config", default="cpu", help="model config of the base model (cpu | rtmpose-m)")
    parser.add_argument("--batch-size", type=int, help="training batch size (default: the config's)")
    parser.add_argument("--pseudo-threshold", type=float, default=PoolTraining().threshold,
                        help="CALS_PSEUDO_THRESHOLD of the pseudo-label round (lower it to time a round with "
                             "pseudo-labels from a base model too briefly trained to be confident)")
    parser.add_argument("--out", type=Path, default=Path("trainer-bench.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="cals-trainer-bench-") as tmp:
        result = bench(Path(tmp), args.images, args.iters, args.base_iters, pool=args.pool, config=args.config,
                       batch_size=args.batch_size, threshold=args.pseudo_threshold)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def bench(tmp: Path, images: int, iters: int, base_iters: int, *, pool: int = 1000, config: str = "cpu",
          batch_size: int | None = None, threshold: float = PoolTraining().threshold) -> dict:
    from tests.cvat_server import CvatTestServer  # stands in for CVAT; the round uses cvat-sdk only
    from tests.trainer_helpers import make_task

    schema = load_schema()
    if pool <= images:
        raise SystemExit(f"--pool ({pool}) must be larger than --images ({images}): the round's frames are pool frames")
    frames = tmp / "frames"  # the pool, with its hidden truth
    generate_dataset(frames, pool, seed=5, progress=False)
    pool_root = body_only(frames, tmp / "pool", schema)  # what the team has: body points only
    base = Registry(tmp / "registry")  # a model some rounds in: it has seen spine points (else none is confident)
    base.promote(train(frames, base, config=config, iters=base_iters, batch_size=batch_size,
                       progress=False).id, reason="bench base")
    with CvatTestServer() as server:
        cvat = CvatSettings(server.url, server.user, server.password, poll_seconds=0.05)
        client = connect(cvat)
        project = client.projects.create({"name": "bench", "labels": [schema.cvat_label()]})
        names = sorted(p.name for p in (tmp / "frames" / "images").iterdir())[:images]  # the round: labelled
        job_ids = [j.id for j in make_task(client, project.id, tmp / "frames", names, tmp).get_jobs()]
        client.close()
        rounds = {}
        for name, training in (("human_only", PoolTraining(human_share=1.0)),
                               ("pool_labels", PoolTraining(labels=True, pseudo=False)),
                               ("pool_labels_pseudo", PoolTraining(labels=True, pseudo=True, threshold=threshold))):
            registry = Registry(shutil.copytree(base.root, tmp / f"registry-{name}"))
            data = tmp / f"data-{name}"
            predicting = predict_pool(registry, pool_root, data, schema) if training.enabled and training.pseudo else None
            settings = RunSettings(cvat=cvat, registry=registry, data_root=data, schema=schema, iters=iters,
                                   batch_size=batch_size, pool=str(pool_root), pool_training=training)
            rounds[name] = {**timed_round(settings, job_ids, tmp / f"q-{name}.sqlite3"),
                            "sampler_predict_seconds": predicting}
    return {"images": images, "pool": pool, "iterations": iters, "config": config, "pseudo_threshold": threshold,
            "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(), **rounds,
            **{f"ratio_{name}_to_human_only": round(rounds[name]["round_seconds"] / rounds["human_only"]["round_seconds"], 2)
               for name in ("pool_labels", "pool_labels_pseudo")}}


def predict_pool(registry: Registry, pool_root: Path, data: Path, schema) -> float:
    """Seconds the sampler takes to predict the pool with the served version (after a promotion)."""
    cache = ScoreCache(cache_file(data))
    start = time.perf_counter()
    Scorer(Predictor.from_registry(registry, registry.current().id), cache=cache).predict(
        LocalPool(pool_root, schema), progress=False)
    cache.close()
    return round(time.perf_counter() - start, 1)


def timed_round(settings: RunSettings, job_ids: list[int], queue: Path) -> dict:
    run = RunQueue(queue).request_run({"jobs": job_ids}, trigger="bench")
    marks: dict[str, float] = {}
    start = time.perf_counter()
    result = execute(run, settings, lambda phase, info: marks.setdefault(phase, time.perf_counter() - start))
    total = time.perf_counter() - start
    phases = sorted(marks.items(), key=lambda kv: kv[1]) + [("end", total)]
    pool_set = result.get("pool_set", {})
    return {"round_seconds": round(total, 1),
            "phase_seconds": {p: round(phases[i + 1][1] - t, 1) for i, (p, t) in enumerate(phases[:-1])},
            "pool_set": {k: pool_set.get(k) for k in ("used", "frames", "people", "pseudo_points", "pseudo_candidates",
                                                      "frames_with_predictions", "pseudo_labels", "reason", "seconds")},
            "promoted": result["model"]["promoted"], "reason": result["model"]["reason"]}


if __name__ == "__main__":
    main()
