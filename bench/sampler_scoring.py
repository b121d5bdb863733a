"""Pool scoring benchmark: images/s, peak memory and cached rescoring time for generated pools.

    python -m bench.sampler_scoring [--registry REG] [--sizes 1000,5000] [--strategies entropy,least_confidence,coreset]

Each size runs in its own process so that its peak RSS is its own. Pools are generated (not timed).
Without --registry, a `cpu` model is trained first (300 iterations on 400 generated images, not timed).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_one(registry: str, size: int, strategies: list[str], work: Path) -> dict:
    from cals.model.predict import Predictor
    from cals.sampling.pool import LocalPool
    from cals.registry import Registry
    from cals.sampling.cache import ScoreCache
    from cals.sampling.scoring import Scorer
    from cals.sampling.strategies import create
    from cals.synth import generate_dataset

    pool_dir = work / f"pool-{size}"
    if not (pool_dir / "annotations.json").is_file():
        generate_dataset(pool_dir, size, seed=11, progress=False)
    predictor = Predictor.from_registry(Registry(registry))
    built = [create(n, schema=predictor.schema) for n in strategies]
    pool = LocalPool(pool_dir, predictor.schema)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cache = ScoreCache(work / f"cache-{size}.sqlite")
    t = time.perf_counter()
    table = Scorer(predictor, cache=cache).score(pool, built, progress=True)
    first = time.perf_counter() - t
    t = time.perf_counter()
    again = Scorer(predictor, cache=cache).score(pool, built, progress=False)
    cached = time.perf_counter() - t
    assert again.computed == 0
    return {"images": size, "strategies": strategies, "score_s": round(first, 1),
            "images_per_s": round(table.computed / first, 2), "cached_rescore_s": round(cached, 2),
            "peak_rss_mb_before_scoring": round(rss_before / 1024), "peak_rss_mb": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "computed": table.computed}


def _trained_registry(work: Path) -> Path:
    from cals.model.train import train
    from cals.registry import Registry
    from cals.synth import generate_dataset

    generate_dataset(work / "train", 400, seed=1, progress=False)
    registry = Registry(work / "registry")
    registry.promote(train(work / "train", registry, iters=300, progress=False).id)
    return registry.root


def main() -> None:
    p = argparse.ArgumentParser(prog="bench.sampler_scoring", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registry", help="registry whose current model scores (default: train a cpu model)")
    p.add_argument("--sizes", default="1000,5000")
    p.add_argument("--strategies", default="entropy,least_confidence,coreset")
    p.add_argument("--work", help="folder for generated pools and caches (default: a temp dir)")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="cals-bench-"))
    strategies = a.strategies.split(",")
    if not a.registry and not a.one:
        a.registry = str(_trained_registry(work))
    if a.one:
        print(json.dumps(run_one(a.registry, a.one, strategies, work)))
        return
    for size in (int(s) for s in a.sizes.split(",")):
        out = subprocess.run([sys.executable, "-m", "bench.sampler_scoring", "--registry", a.registry, "--one", str(size),
                              "--strategies", a.strategies, "--work", str(work)],
                             check=True, stdout=subprocess.PIPE, text=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
