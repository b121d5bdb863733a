"""Pool scoring across N processes of one host (torchrun, torch.distributed; CALS_SAMPLER_RANKS).

One process uses the cores poorly on a CPU host: between the network's matrix multiplies each image
spends its time in single-threaded Python (crop pipeline, decoding, strategies). N processes with
cores / N threads each keep every core busy.

The sampler writes a job file (private temp dir) and runs

    python -m torch.distributed.run --standalone --nproc_per_node N -m cals.sampling.sharded JOB

Rank 0 opens the pool, walks it once in pool order, keeps what the score cache lacks (the Scorer's
own rule), reads the encoded files and hands them out in steps of N x batch; every rank decodes and
measures its share with the Scorer's own code; rank 0 gathers and stores (the only cache writer).
The sampler then scores as a single process does and finds everything in the cache: the table, its
order and the round are the ones a single process makes.
"""
from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from cals.errors import CalsError
from cals.sampling.pool import LocalPool, Pool, PoolItem, decode_image
from cals.sampling.scoring import Scorer, per_image_strategies, strategy_needs
from cals.sampling.strategies import PoolStrategy, Strategy

log = logging.getLogger(__name__)
TAIL_CHARS = 3000  # of the ranks' output, in the error of a failed run


@dataclass(frozen=True)
class PoolSource:
    """How rank 0 opens the pool the sampler scores: a local COCO folder, or a CVAT project's pool task."""

    local: str | None = None
    cvat: object = None  # cals.cvat.client.CvatSettings
    project_id: int | None = None
    task_name: str = "pool"

    @classmethod
    def of(cls, pool: Pool, cvat: object = None) -> "PoolSource":
        if isinstance(pool, LocalPool):
            return cls(local=str(pool.root))
        from cals.cvat.pool import CvatPool

        if isinstance(pool, CvatPool) and cvat is not None:
            return cls(cvat=cvat, project_id=pool.task.project_id, task_name=pool.task.name)
        raise CalsError(f"sharded scoring cannot reopen pool {pool.name!r} in another process "
                        "(a local folder, or a CVAT pool with the CVAT settings)")

    @contextlib.contextmanager
    def open(self, schema) -> Iterator[Pool]:
        if self.local is not None:
            yield LocalPool(self.local, schema)
            return
        from cals.cvat.client import connect
        from cals.cvat.pool import CvatPool

        client = connect(self.cvat)
        try:
            yield CvatPool(client, self.project_id, schema, task_name=self.task_name)
        finally:
            client.close()


@dataclass
class Job:
    """Everything a rank needs, pickled into the job file."""

    registry: str
    version: str
    previous: str | None
    detector: str | None
    batch_size: int
    cache: str
    pool: PoolSource
    exclude: frozenset[str]
    strategies: list  # Strategy | PoolStrategy, the objects the sampler scores with
    progress: bool = False


@dataclass(frozen=True)
class ShardReport:
    """What the ranks did: images each scored, and where the time went (start-up is paid per scoring)."""

    scored: list[int]  # by rank
    startup_s: float  # launch until every rank had joined and loaded its models
    scoring_s: float  # the ranks' scoring, until rank 0 stored the last step
    exit_s: float  # until torchrun had exited

    @property
    def seconds(self) -> float:
        return self.startup_s + self.scoring_s + self.exit_s


@dataclass(frozen=True)
class Sharding:
    """Scoring with `ranks` processes; set on a Scorer (the sampler does it from CALS_SAMPLER_RANKS).

    The ranks load their models from `registry` (the Scorer's versions) and their person detector
    from `detector`; `cvat` lets rank 0 reopen a CVAT pool."""

    ranks: int
    registry: str
    detector: str | None = None
    cvat: object = field(default=None, repr=False)  # cals.cvat.client.CvatSettings

    def fill(self, scorer: Scorer, pool: Pool, strategies: Sequence[Strategy | PoolStrategy], *,
             exclude: set[str] | frozenset[str] = frozenset(), progress: bool = True) -> ShardReport:
        """Measure every entry the cache lacks across the ranks; what each rank scored, and the timings."""
        if scorer.cache.path is None:
            raise CalsError("sharded scoring needs a score cache file: the ranks hand their results over in it")
        job = Job(registry=str(self.registry), version=scorer.predictor.version_id,
                  previous=scorer.previous.version_id if scorer.previous is not None else None,
                  detector=self.detector, batch_size=scorer.batch_size, cache=str(scorer.cache.path),
                  pool=PoolSource.of(pool, self.cvat), exclude=frozenset(exclude), strategies=list(strategies),
                  progress=progress)
        report = run(job, self.ranks, echo=progress)
        log.info("%d ranks scored %s images: start-up %.1f s, scoring %.1f s, exit %.1f s", self.ranks,
                 report.scored, report.startup_s, report.scoring_s, report.exit_s)
        return report


# ---- the sampler's side ---------------------------------------------------------------------------
def run(job: Job, ranks: int, *, echo: bool = False) -> ShardReport:
    """Run the job under torchrun; a failure is a CalsError with the ranks' own error, else the tail
    of their output. `echo` passes their output (progress) on."""
    with tempfile.TemporaryDirectory(prefix="cals-shards-") as tmp:  # mode 0700: it holds CVAT credentials
        folder = Path(tmp)
        (folder / "job.pkl").write_bytes(pickle.dumps(job))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
                   "-m", __name__, str(folder / "job.pkl")]
        launched = time.time()
        code, tail = _run_echoing(command, echo)
        result = folder / "result.json"
        if code == 0 and result.is_file():
            r = json.loads(result.read_text())
            return ShardReport(r["scored"], startup_s=r["ready"] - launched, scoring_s=r["done"] - r["ready"],
                               exit_s=time.time() - r["done"])
        errors = "; ".join(p.read_text() for p in sorted(folder.glob("error-*.txt")))
        raise CalsError(f"sharded scoring ({ranks} ranks) failed with exit code {code}: "
                        f"{errors or 'no rank reported an error'}\n--- output of the ranks (tail) ---\n{tail}")


def _run_echoing(command: list[str], echo: bool) -> tuple[int, str]:
    """Exit code and the last TAIL_CHARS of the command's output (stdout and stderr, which the
    caller's stdout never receives: `python -m sampler round` prints its JSON there)."""
    tail: collections.deque[str] = collections.deque()
    size = 0
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        while chunk := proc.stdout.read1(4096):
            text = chunk.decode(errors="replace")
            if echo:
                sys.stderr.write(text)
                sys.stderr.flush()
            tail.append(text)
            size += len(text)
            while size - len(tail[0]) > TAIL_CHARS:
                size -= len(tail.popleft())
        code = proc.wait()
    return code, "".join(tail)[-TAIL_CHARS:]


# ---- the ranks' side ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """One rank: join the group, build the models, score (rank 0 serves the work), report."""
    from cals import distributed
    from cals.model.predict import default_device

    job_file = Path((argv if argv is not None else sys.argv[1:])[0])
    job: Job = pickle.loads(job_file.read_bytes())
    device = default_device()
    distributed.init(device)  # before any model: on a CPU it sizes the threads every session is built with
    try:
        scorer = _rank_scorer(job, _rank_device(device))
        distributed.barrier()  # every rank ready: the start-up ends here
        ready = time.time()
        mine = _serve(job, scorer) if distributed.is_main() else _work(job, scorer)
        scored = _gather(mine)
        scorer.cache.close()
        if distributed.is_main():
            result = {"scored": scored, "ready": ready, "done": time.time()}
            (job_file.parent / "result.json").write_text(json.dumps(result))
        return 0
    except BaseException as exc:
        (job_file.parent / f"error-{distributed.rank()}.txt").write_text(
            f"rank {distributed.rank()}: {type(exc).__name__}: {exc}")
        raise
    finally:
        distributed.shutdown()


def _rank_device(device: str) -> str:
    """A GPU rank's own device (init picked cuda:LOCAL_RANK), else `device`."""
    if not device.startswith("cuda"):
        return device
    import torch

    return f"cuda:{torch.cuda.current_device()}"


def _rank_scorer(job: Job, device: str) -> Scorer:
    """The scorer of one rank: the versions the sampler scores with; rank 0 alone opens the cache."""
    from cals import distributed
    from cals.model import threads
    from cals.model.predict import Predictor
    from cals.registry import Registry
    from cals.sampling.cache import ScoreCache

    registry = Registry(job.registry)
    predictor = Predictor.from_registry(registry, job.version, device=device)
    previous = Predictor.from_registry(registry, job.previous, device=device) if job.previous else None
    detector = None
    if job.detector:
        from cals.model.detector import PersonDetector
        detector = PersonDetector(job.detector, threads=threads.session_threads() or None)
    cache = ScoreCache(job.cache if distributed.is_main() else None)
    return Scorer(predictor, previous=previous, detector=detector, cache=cache, batch_size=job.batch_size)


def _serve(job: Job, scorer: Scorer) -> int:
    """Rank 0: the pool's missing entries, in steps of ranks x batch, out to the ranks and into the cache."""
    from tqdm import tqdm

    from cals import distributed

    per_image, needs = per_image_strategies(job.strategies), strategy_needs(job.strategies)
    ranks, scored = distributed.world_size(), 0
    with job.pool.open(scorer.predictor.schema) as pool:
        todo = list(scorer.pending(pool, per_image, needs, job.exclude))
        with tqdm(total=len(todo), desc=f"scoring pool ({ranks} ranks)", unit="img", disable=not job.progress) as bar:
            for start in range(0, len(todo), ranks * job.batch_size):
                step = todo[start:start + ranks * job.batch_size]
                share = -(-len(step) // ranks)
                shares = [[(i, pool.image_bytes(i)) for i in step[r * share:(r + 1) * share]] for r in range(ranks)]
                mine = _scatter(shares)
                entries = {k: v for part in _gather_entries(_measure(scorer, mine, per_image, needs)) for k, v in part}
                scorer.cache.store(scorer.predictor.version_id, entries)
                scored += len(mine)
                bar.update(len(step))
    _scatter([None] * ranks)  # done
    return scored


def _work(job: Job, scorer: Scorer) -> int:
    """Ranks > 0: measure each share rank 0 sends until it sends None."""
    per_image, needs = per_image_strategies(job.strategies), strategy_needs(job.strategies)
    scored = 0
    while (mine := _scatter(None)) is not None:
        _gather_entries(_measure(scorer, mine, per_image, needs))
        scored += len(mine)
    return scored


def _measure(scorer: Scorer, share: list[tuple[PoolItem, bytes]], per_image: list[Strategy], needs: set[str]
             ) -> list[tuple[str, dict]]:
    """(key, cache entry) of each (item, encoded file) of a share, in share order."""
    items = [item for item, _ in share]
    images = [decode_image(data, repr(item.name)) for item, data in share]
    return list(scorer.measure(items, images, per_image, needs).items())


def _scatter(shares: list | None):
    """Rank r's element of rank 0's `shares` (others pass None)."""
    import torch.distributed as dist

    out = [None]
    dist.scatter_object_list(out, shares, src=0)
    return out[0]


def _gather_entries(mine: list[tuple[str, dict]]) -> list[list[tuple[str, dict]]]:
    """Every rank's entries on rank 0, in rank order (= pool order of the step); [] elsewhere."""
    return _gather(mine) or []


def _gather(value):
    """[value of rank 0, value of rank 1, ...] on rank 0; None on the others."""
    import torch.distributed as dist

    from cals import distributed

    out = [None] * distributed.world_size() if distributed.is_main() else None
    dist.gather_object(value, out, dst=0)
    return out


def _exit_now(code: int) -> None:
    """Leave without the interpreter's teardown of torch, ONNX Runtime and mmengine (about a second
    per rank, paid by every scoring): the result file and the cache are written and closed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit_now(main())
