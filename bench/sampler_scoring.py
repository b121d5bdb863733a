"""Pool scoring benchmark: images/s, peak memory and cached rescoring time for generated pools.

    python -m bench.sampler_scoring [--registry REG] [--sizes 1000,5000] [--strategies entropy,least_confidence,coreset]
                                    [--ranks 1,2]

Each size runs in its own process so that its peak RSS is its own. Pools are generated (not timed).
Without --registry, a `cpu` model is trained first (300 iterations on 400 generated images, not timed).
`--ranks 1,2` scores each pool per rank count, one after the other in the same process, each time
with a fresh cache: 1 rank is the sampler's in-process path (every core), N > 1 its sharded path
(cals.sampling.sharded, CALS_SAMPLER_RANKS=N) twice: "ranks_started": "now" is the first scoring,
timed with the start-up of torchrun and of the ranks' models, "before" the next one, which finds the
ranks up (the service keeps them between scorings). One JSON line per scoring, then one with the
speed-ups against 1 rank.
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


def run_one(registry: str, size: int, strategies: list[str], work: Path, ranks: list[int]) -> list[dict]:
    from cals.model.predict import Predictor
    from cals.data.pool import LocalPool
    from cals.registry import Registry
    from cals.sampling.sharded import RankGroup, Sharding
    from cals.sampling.strategies import create
    from cals.synth import generate_dataset

    pool_dir = work / f"pool-{size}"
    if not (pool_dir / "annotations.json").is_file():
        generate_dataset(pool_dir, size, seed=11, progress=False)
    predictor = Predictor.from_registry(Registry(registry))
    built = [create(n, schema=predictor.schema) for n in strategies]
    pool = LocalPool(pool_dir, predictor.schema)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows = []
    for count in ranks:
        group = RankGroup(count) if count > 1 else None
        try:  # N > 1: the first scoring starts the ranks, the second finds them up (the service's case)
            for started in (("now", "before") if group else (None,)):
                row = _score_once(predictor, pool, built, work / f"cache-{size}-{count}ranks.sqlite",
                                  Sharding(count, registry, group=group) if group else None)
                rows.append({"images": size, "ranks": count, **({"ranks_started": started} if started else {}),
                             "strategies": strategies, **row})
        finally:
            if group:
                group.close()
        if count == 1:  # the ranks' processes are not this one: their memory is not counted here
            rows[-1].update(peak_rss_mb_before_scoring=round(rss_before / 1024),
                            peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    base = next((r["images_per_s"] for r in rows if r["ranks"] == 1), None)
    if base and len(rows) > 1:
        rows.append({"images": size, "speedup_vs_1_rank": {
            f'{r["ranks"]} ranks started {r["ranks_started"]}': round(r["images_per_s"] / base, 2)
            for r in rows if r["ranks"] != 1}})
    return rows


def _score_once(predictor, pool, strategies, cache_path: Path, sharding) -> dict:
    """One scoring with a fresh cache (timed whole: for ranks started now, their start-up and exit),
    then a rescoring from the cache."""
    from cals.sampling.cache import ScoreCache
    from cals.sampling.scoring import Scorer

    cache_path.unlink(missing_ok=True)
    cache = ScoreCache(cache_path)
    t, cpu = time.perf_counter(), _cpu_seconds()
    table = Scorer(predictor, cache=cache, sharding=sharding).score(pool, strategies, progress=True)
    first, cpu = time.perf_counter() - t, _cpu_seconds() - cpu
    t = time.perf_counter()
    again = Scorer(predictor, cache=cache, sharding=sharding).score(pool, strategies, progress=False)
    cached = time.perf_counter() - t
    assert again.computed == 0 and table.computed == len(pool)
    row = {"score_s": round(first, 1), "images_per_s": round(table.computed / first, 2),
           "cached_rescore_s": round(cached, 2)}
    if table.sharded is None:  # the ranks' CPU time is counted only once they have exited
        row["cores_busy"] = round(cpu / first, 2)
    else:
        r = table.sharded
        row.update(scored_by_rank=r.scored, startup_s=round(r.startup_s, 1), ranks_scoring_s=round(r.scoring_s, 1),
                   exit_s=round(r.exit_s, 1), images_per_s_after_startup=round(table.computed / r.scoring_s, 2))
    return row


def _cpu_seconds() -> float:
    """CPU time of this process: cores busy = CPU time / wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _trained_registry(work: Path) -> Path:
    from cals.model.train import train
    from cals.registry import Registry
    from cals.synth import generate_dataset

    generate_dataset(work / "train", 400, seed=1, progress=False)
    registry = Registry(work / "registry")
    registry.promote(train(work / "train", registry, iters=300, progress=False).id)
    return registry.root


def _random_registry(work: Path, config: str) -> Path:
    """A registry whose current version is `config` with random weights (speed only; bench.serving's)."""
    from bench.serving import version_folder
    from cals.model.train import version_files
    from cals.registry import Registry

    registry = Registry(work / f"registry-{config}")
    folder = version_folder(config, work / "versions")
    registry.promote(registry.add(version_files(folder), meta={"config": config}).id)
    return registry.root


def main() -> None:
    p = argparse.ArgumentParser(prog="bench.sampler_scoring", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registry", help="registry whose current model scores (default: train a cpu model)")
    p.add_argument("--config", default="cpu", help="without --registry: cpu (trained) or rtmpose-m (random weights)")
    p.add_argument("--sizes", default="1000,5000")
    p.add_argument("--strategies", default="entropy,least_confidence,coreset")
    p.add_argument("--ranks", default="1", help="rank counts to compare, e.g. 1,2 (CALS_SAMPLER_RANKS)")
    p.add_argument("--work", help="folder for generated pools and caches (default: a temp dir)")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="cals-bench-"))
    strategies = a.strategies.split(",")
    if not a.registry and not a.one:
        a.registry = str(_trained_registry(work) if a.config == "cpu" else _random_registry(work, a.config))
    if a.one:
        for row in run_one(a.registry, a.one, strategies, work, [int(r) for r in a.ranks.split(",")]):
            print(json.dumps(row), flush=True)
        return
    for size in (int(s) for s in a.sizes.split(",")):
        out = subprocess.run([sys.executable, "-m", "bench.sampler_scoring", "--registry", a.registry, "--one", str(size),
                              "--strategies", a.strategies, "--ranks", a.ranks, "--work", str(work)],
                             check=True, stdout=subprocess.PIPE, text=True)
        print("\n".join(line for line in out.stdout.splitlines() if line.startswith("{")), flush=True)


if __name__ == "__main__":
    main()
