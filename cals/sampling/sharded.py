"""Pool scoring across N processes of one host (torchrun, torch.distributed; CALS_SAMPLER_RANKS).

One process uses the cores poorly on a CPU host: between the network's matrix multiplies each image
spends its time in Python (crop pipeline, decoding, strategies), and intra-op threads stall on small
tensors or when the host is busy. N processes with cores / N threads each keep every core working.

The sampler starts the ranks once (`RankGroup`) and keeps them:

    python -m torch.distributed.run --standalone --nproc_per_node N -m cals.sampling.sharded DIR PID

and hands each scoring over as a job file in DIR (a private temp dir). Rank 0 opens the pool, walks
it once in pool order, keeps what the score cache lacks (the Scorer's own rule), reads the encoded
files and hands them out in steps of N x batch; every rank decodes and measures its share with the
Scorer's own code; rank 0 gathers and stores (the only cache writer) and writes the job's result.
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
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

from cals.errors import CalsError
from cals.data.pool import LocalPool, Pool, PoolItem, decode_image
from cals.sampling.scoring import Scorer, ShardReport, per_image_strategies, strategy_needs
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


class RankGroup:
    """N torchrun ranks that score job after job until closed: the start-up (torchrun, imports, the
    models of a version) is paid once, not per scoring. The sampler keeps one for its lifetime; a
    group whose ranks died (an error, gloo's 2-hour timeout while idle) starts again on the next job.
    Rank 0 ends the group when the process that started it is gone."""

    POLL_S = 0.02

    def __init__(self, ranks: int) -> None:
        self.ranks = ranks
        self._proc: subprocess.Popen | None = None
        self._folder: Path | None = None
        self._jobs = 0
        self._tail: collections.deque[str] = collections.deque(maxlen=64)
        self._echo = False
        self._lock = threading.Lock()

    def submit(self, job: Job, *, echo: bool = False) -> ShardReport:
        """Run one job on the ranks (starting them if needed); CalsError with the ranks' own error,
        else the tail of their output, when they fail (the group is then closed). Ranks that were
        up before and die without an error (stopped, killed) are started again once: what they
        stored is in the cache and is not scored again."""
        with self._lock:
            asked = time.time()
            for attempt in (1, 2):
                warm = self._proc is not None and self._proc.poll() is None
                if not warm:
                    self._stop()
                    self._start()
                self._jobs += 1
                number, self._echo = self._jobs, echo
                _write_atomic(self._folder / f"job-{number}.pkl", pickle.dumps(job))
                try:
                    r = self._wait(number, retry=warm and attempt == 1)
                finally:
                    self._echo = False
                if r is not None:
                    return ShardReport(r["scored"], startup_s=r["ready"] - asked, scoring_s=r["done"] - r["ready"],
                                       exit_s=time.time() - r["done"])
            raise AssertionError("unreachable: the second attempt raises or returns")

    @property
    def pid(self) -> int | None:
        """The torchrun process of running ranks, else None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def close(self) -> None:
        """Stop the ranks (they finish no job: call between jobs)."""
        with self._lock:
            self._stop()

    def _start(self) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="cals-shards-"))  # mode 0700: jobs hold CVAT credentials
        self._jobs = 0
        self._tail.clear()
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={self.ranks}",
                   "-m", __name__, str(self._folder), str(os.getpid())]
        self._proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._pump, args=(self._proc,), daemon=True, name="cals-shards-output").start()

    def _pump(self, proc: subprocess.Popen) -> None:
        """The ranks' output (stdout and stderr) into the tail, and to our stderr while a job echoes
        (never to our stdout: `python -m sampler round` prints its JSON there)."""
        while chunk := proc.stdout.read1(4096):
            text = chunk.decode(errors="replace")
            self._tail.append(text)
            if self._echo:
                sys.stderr.write(text)
                sys.stderr.flush()

    def _wait(self, number: int, *, retry: bool) -> dict | None:
        """Rank 0's result of job `number`; None when the ranks died without an error and `retry`."""
        result = self._folder / f"result-{number}.json"
        while not result.is_file():
            if self._proc.poll() is not None:
                time.sleep(0.2)  # the last of the output
                errors = "; ".join(p.read_text() for p in sorted(self._folder.glob(f"error-{number}-*.txt")))
                code, tail = self._proc.returncode, "".join(self._tail)[-TAIL_CHARS:]
                self._stop()
                if retry and not errors:
                    log.warning("the scoring ranks had stopped (exit code %s); starting them again", code)
                    return None
                raise CalsError(f"sharded scoring ({self.ranks} ranks) failed with exit code {code}: "
                                f"{errors or 'no rank reported an error'}\n--- output of the ranks (tail) ---\n{tail}")
            time.sleep(self.POLL_S)
        return json.loads(result.read_text())

    def _stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                (self._folder / "stop").touch()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


@dataclass(frozen=True)
class Sharding:
    """Scoring with `ranks` processes; set on a Scorer (the sampler does it from CALS_SAMPLER_RANKS).

    The ranks load their models from `registry` (the Scorer's versions) and their person detector
    from `detector`; `cvat` lets rank 0 reopen a CVAT pool. With a `group` the ranks stay up between
    scorings; without one they are started for each scoring and stopped after it."""

    ranks: int
    registry: str
    detector: str | None = None
    cvat: object = field(default=None, repr=False)  # cals.cvat.client.CvatSettings
    group: RankGroup | None = field(default=None, repr=False, compare=False)

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
        owned = self.group is None
        group = self.group or RankGroup(self.ranks)
        started = time.time()
        try:
            report = group.submit(job, echo=progress)
        finally:
            if owned:
                group.close()
        if owned:  # ranks started for this scoring alone: their exit belongs to it
            report = replace(report, exit_s=time.time() - started - report.startup_s - report.scoring_s)
        log.info("%d ranks scored %s images: start-up %.1f s, scoring %.1f s, exit %.1f s", self.ranks,
                 report.scored, report.startup_s, report.scoring_s, report.exit_s)
        return report


def _write_atomic(path: Path, data: bytes) -> None:
    """Rank 0 never sees half a job file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ---- the ranks' side ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """One rank: join the group, then for each job: the models of its versions (kept while they
    are asked for), score (rank 0 serves the work), report; until rank 0 finds no more."""
    from cals.model import distributed
    from cals.model.predict import default_device

    folder, parent = (argv if argv is not None else sys.argv[1:])[:2]
    folder, parent = Path(folder), int(parent)
    device = default_device()
    distributed.init(device)  # before any model: on a CPU it sizes the threads every session is built with
    models, number = _Models(_rank_device(device)), 0
    try:
        while True:
            number = distributed.broadcast(_next_job(folder, number + 1, parent) if distributed.is_main() else None)
            if number is None:
                return 0
            _run_job(folder, number, models)
    finally:
        distributed.shutdown()


def _next_job(folder: Path, number: int, parent: int) -> int | None:
    """Rank 0: `number` once its job file is there; None to stop: asked to, or the process that
    started the group or torchrun (this process's parent) is gone."""
    launcher = os.getppid()
    while not (folder / f"job-{number}.pkl").is_file():
        if (folder / "stop").exists() or not _alive(parent) or os.getppid() != launcher:
            return None
        time.sleep(RankGroup.POLL_S)
    return number


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_job(folder: Path, number: int, models: "_Models") -> None:
    from cals.model import distributed

    try:
        job: Job = pickle.loads((folder / f"job-{number}.pkl").read_bytes())
        scorer = models.scorer(job)
        distributed.barrier()  # every rank ready: the start-up ends here
        ready = time.time()
        mine = _serve(job, scorer) if distributed.is_main() else _work(job, scorer)
        scored = _gather(mine)
        scorer.cache.close()
        if distributed.is_main():
            result = {"scored": scored, "ready": ready, "done": time.time()}
            _write_atomic(folder / f"result-{number}.json", json.dumps(result).encode())
    except BaseException as exc:
        (folder / f"error-{number}-{distributed.rank()}.txt").write_text(
            f"rank {distributed.rank()}: {type(exc).__name__}: {exc}")
        raise


class _Models:
    """A rank's models: the versions of the last job and the detector, loaded once and kept while asked for."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._predictors: dict[tuple[str, str], object] = {}
        self._detectors: dict[str, object] = {}

    def scorer(self, job: Job) -> Scorer:
        """The scorer of one rank for a job; rank 0 alone opens the cache."""
        from cals.model import distributed
        from cals.sampling.cache import ScoreCache

        wanted = [(job.registry, v) for v in (job.version, job.previous) if v]
        self._predictors = {key: self._predictors.get(key) or self._load(*key) for key in wanted}
        predictor = self._predictors[(job.registry, job.version)]
        previous = self._predictors[(job.registry, job.previous)] if job.previous else None
        cache = ScoreCache(job.cache if distributed.is_main() else None)
        return Scorer(predictor, previous=previous, detector=self._detector(job.detector), cache=cache,
                      batch_size=job.batch_size)

    def _load(self, registry: str, version: str):
        from cals.model.predict import Predictor
        from cals.registry import Registry

        return Predictor.from_registry(Registry(registry), version, device=self.device)

    def _detector(self, path: str | None):
        if not path:
            return None
        if path not in self._detectors:
            from cals.model.detector import PersonDetector
            self._detectors = {path: PersonDetector(path)}  # this rank's threads (session_threads)
        return self._detectors[path]


def _rank_device(device: str) -> str:
    """A GPU rank's own device (init picked cuda:LOCAL_RANK), else `device`."""
    if not device.startswith("cuda"):
        return device
    import torch

    return f"cuda:{torch.cuda.current_device()}"


def _serve(job: Job, scorer: Scorer) -> int:
    """Rank 0: the pool's missing entries, in steps of ranks x batch, out to the ranks and into the cache."""
    from tqdm import tqdm

    from cals.model import distributed

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

    from cals.model import distributed

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
