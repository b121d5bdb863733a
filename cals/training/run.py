"""A training run from CVAT: export finished jobs, report correction effort, merge them into the
labelled set, then one `fine_tune_round` (train, evaluate both, promote) and notify the sampler.
A run needs a current model to fine-tune: it never trains a first one from scratch.

The trainer's worker calls `execute` for each claimed run; nothing here knows about HTTP. Training
runs in a child process (`cals.training.train_process`), so its crash fails the run only. Every
export is read and checked before anything is merged, so a failed export or a bad archive leaves
the labelled set and the registry as they were.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cals.cvat.round_upload import as_shown
from cals.sampling import preannotations
from cals.cvat.client import CvatSettings, connect
from cals.cvat.export import ExportedJob, JobGone, export_job
from cals.cvat.trigger import JobTrigger
from cals.training.effort import DEFAULT_TOLERANCE, correction_effort
from cals.errors import CalsError
from cals.training.fine_tune import PhaseCallback as Report, fine_tune_round
from cals.training.labelled_set import DEFAULT_VAL_FRACTION, LabelledSet
from cals.sampling.client import NotifyError, notify_promoted
from cals.training.promotion import DEFAULT_CONFIDENCE, DEFAULT_MARGIN, DEFAULT_METRIC
from cals.registry import Registry
from cals.training.pool_round import run_pool_set
from cals.training.pool_set import PoolTraining
from cals.training.queue import Run
from cals.training.train_process import PoolData, TrainFn, TrainProcess
from cals.schema import Schema

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSettings:
    """Everything a run needs; `data_root` holds labelled/, preannotations/ and runs/."""

    cvat: CvatSettings
    registry: Registry
    data_root: Path
    schema: Schema
    trigger: JobTrigger = JobTrigger("state", "completed")
    config: str = "cpu"
    iters: int | None = None
    batch_size: int | None = None  # None: the config's
    margin: float = DEFAULT_MARGIN
    metric: str = DEFAULT_METRIC
    confidence: float = DEFAULT_CONFIDENCE
    val_fraction: float = DEFAULT_VAL_FRACTION
    effort_tolerance: float = DEFAULT_TOLERANCE
    sampler_url: str | None = None
    api_token: str | None = None
    train_procs: int = 1  # training processes (torchrun when > 1), always in a child process
    pool_training: PoolTraining = PoolTraining()  # what of the pool each round also trains on
    pool: str = "cvat"  # CALS_POOL: the project's pool task, or a local COCO folder
    pool_task: str = "pool"
    project_id: int | None = None  # the CVAT pool's project; default: the exported jobs' project

    def train_process(self) -> TrainProcess:
        """How a run trains: in a child process, so a crash there fails only the run."""
        return TrainProcess(self.train_procs)

    @property
    def labelled_set(self) -> LabelledSet:
        return LabelledSet(self.data_root / "labelled", self.schema, val_fraction=self.val_fraction)

    @property
    def preannotations_root(self) -> Path:
        return self.data_root / "preannotations"


def execute(run: Run, settings: RunSettings, report: Report, *, train: TrainFn | None = None) -> dict[str, Any]:
    """Do `run`; returns its result document. Raises CalsError (or a training error) on failure.

    `train`: default `settings.train_process()` (the worker passes its own, to stop it). All of the
    run's scratch files (exports, training work dir and log) are under `runs/run-<id>/`, removed
    when the run ends either way; `clean_leftovers` removes those of a killed run at start. The
    registry's staging dirs of killed writers go before and after every run: one killed a moment
    before the trainer restarted may still hold its lock when the start-up cleaning looks.
    """
    workdir = settings.data_root / "runs" / f"run-{run.id}"
    clean_staging(settings.registry)
    try:
        return _execute(run, settings, report, workdir, train or settings.train_process())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        clean_staging(settings.registry)


def clean_staging(registry: Registry) -> list[Path]:
    """`registry.clean_staging()`, logged instead of raised: leftovers cost disk space, not correctness."""
    try:
        return registry.clean_staging()
    except OSError:
        log.exception("could not remove the registry's staging dirs")
        return []


def clean_leftovers(settings: RunSettings) -> list[Path]:
    """Remove what runs killed mid-way left: their `runs/run-<id>/` folders, the registry's staging
    dirs and half-merged labelled-set files. Versions, `current` and merged labels are kept.

    The caller makes sure no run is executing (the worker calls it at start, before it claims one).
    """
    runs = sorted((settings.data_root / "runs").glob("run-*"))
    for folder in runs:
        shutil.rmtree(folder, ignore_errors=True)
    removed = [*runs, *settings.registry.clean_staging(), *settings.labelled_set.clean()]
    if runs:
        log.warning("removed the work folders of interrupted runs: %s", [p.name for p in runs])
    return removed


def _execute(run: Run, settings: RunSettings, report: Report, workdir: Path, train: TrainFn) -> dict[str, Any]:
    exports, skipped = export_all(run.targets, settings, workdir, report)
    result: dict[str, Any] = {"jobs": [e.job_id for e in exports], "skipped": skipped,
                              "effort": {str(e.job_id): job_effort(e, settings) for e in exports}}
    report("merging", {"jobs": len(exports)})
    labelled = settings.labelled_set
    result["labelled_set"] = labelled.merge(exports, run_id=run.id).as_dict()
    require_initial_model(settings.registry)  # the labels stay merged for the run that follows
    result["pool_set"], pool = pool_for_run(settings, exports, report)
    outcome = fine_tune_round(
        labelled.split_root("train"), labelled.split_root("val"), settings.registry,
        config=settings.config, iters=settings.iters, batch_size=settings.batch_size, margin=settings.margin, metric=settings.metric,
        confidence=settings.confidence, on_progress=report, work_dir=workdir / "train", train_fn=train, pool=pool)
    result["model"] = outcome.as_dict()
    result["metrics"] = {"candidate": outcome.candidate_metrics, "current": outcome.current_metrics}
    if outcome.promoted:
        result["notification"] = notify_sampler(settings, outcome.version.id, exports)
    return result


def pool_for_run(settings: RunSettings, exports: list[ExportedJob], report: Report
                 ) -> tuple[dict[str, Any], PoolData | None]:
    """The pool set this run trains on beside the labelled set (`cals.training.pool_round`). The pool
    unreadable (CVAT down, a frame broken) costs the pool set, not the run: the human labels train alone."""
    report("pool set", {})
    projects = [e.project_id for e in exports if e.project_id]
    project_id = settings.project_id or (projects[0] if projects else None)

    @contextlib.contextmanager
    def cvat_pool():
        from cals.cvat.pool import CvatPool

        if project_id is None:
            raise CalsError("the CVAT pool is the pool task of a project: set CALS_PROJECT_ID")
        with connect(settings.cvat) as client:
            yield CvatPool(client, project_id, settings.schema, task_name=settings.pool_task)

    try:
        return run_pool_set(settings.pool_training, settings.pool, settings.data_root, settings.registry,
                            settings.schema, labelled=settings.labelled_set.frame_names(), open_cvat_pool=cvat_pool)
    except (CalsError, OSError) as exc:
        log.warning("training on human labels alone: the pool set failed: %s", exc)
        return {"used": False, "reason": f"the pool set failed: {exc}"}, None


def require_initial_model(registry: Registry) -> None:
    """The trainer only fine-tunes: a first model trained from scratch here would stand in for the
    function's initial model (COCO-17 body weights, spine from the prior) and lose its body points."""
    if registry.current() is None:
        raise CalsError(f"no initial model registered in {registry.root}: the trainer only fine-tunes; the Nuclio "
                        "function registers it from CALS_INIT_CHECKPOINT at its first start (its 503 reply says "
                        "why it could not), or run `cals train --init CHECKPOINT`; this run's labels are kept for the next")


def export_all(targets: dict[str, list[int]], settings: RunSettings, workdir: Path,
               report: Report) -> tuple[list[ExportedJob], list[dict[str, Any]]]:
    """Export every target job (tasks/projects: their jobs at the trigger) with one client.

    A job CVAT no longer has (its task was deleted after the job was completed) is skipped and
    returned as {"job", "reason"}, so one deletion does not cost the others' labels; any other
    export failure still fails the run, and so does a run whose jobs are all gone.
    """
    report("exporting", {})
    with connect(settings.cvat) as client:
        job_ids = resolve_jobs(client, targets, settings.trigger)
        if not job_ids:
            raise CalsError(f"no job to learn from in {targets} (jobs of tasks/projects count "
                            f"once they reach {settings.trigger})")
        exports, gone = [], []
        for done, job_id in enumerate(job_ids):
            report("exporting", {"jobs_done": done, "jobs_total": len(job_ids), "job": job_id})
            try:
                exports.append(export_job(client, job_id, workdir, settings.schema))
            except JobGone as exc:
                log.warning("skipping job %d: %s", job_id, exc)
                gone.append({"job": job_id, "reason": str(exc)})
    if not exports:
        raise CalsError("every job of this run is gone from CVAT: " + "; ".join(g["reason"] for g in gone))
    return exports, gone


def resolve_jobs(client, targets: dict[str, list[int]], trigger: JobTrigger) -> list[int]:
    """Explicit jobs as given; for tasks and projects, their jobs that reached the trigger."""
    from cvat_sdk.api_client.exceptions import ApiException

    jobs = set(targets.get("jobs") or [])
    for kind, key in (("tasks", "task_id"), ("projects", "project_id")):
        for parent in targets.get(kind) or []:
            try:
                getattr(client, kind).retrieve(parent)
                found = client.jobs.list(**{key: parent})
            except ApiException as exc:
                raise CalsError(f"{kind[:-1]} {parent} cannot be read from CVAT (HTTP {exc.status})") from None
            jobs |= {j.id for j in found if trigger.matches(j)}
    return sorted(jobs)


def job_effort(export: ExportedJob, settings: RunSettings) -> dict[str, Any]:
    """Per point group, how much of CALS's pre-annotation people moved in this job."""
    record = preannotations.load(settings.preannotations_root, export.task_id)
    if record is None:
        return {"preannotated": False}
    pre, final = as_shown(record), preannotations.by_frame_name(export.coco)
    frames = sorted(pre.keys() & final.keys())
    groups = correction_effort({f: pre[f] for f in frames}, {f: final[f] for f in frames},
                               settings.schema, tolerance=settings.effort_tolerance)
    return {"preannotated": True, "frames": len(frames), "tolerance": settings.effort_tolerance,
            "groups": groups}


def notify_sampler(settings: RunSettings, version: str, exports: list[ExportedJob]) -> dict[str, Any]:
    """Best effort: the outcome is recorded on the run, a failure never fails it."""
    if not settings.sampler_url:
        return {"sent": False, "reason": "CALS_SAMPLER_URL is not set"}
    projects = {e.project_id for e in exports}
    project_id = projects.pop() if len(projects) == 1 else None
    try:
        status = notify_promoted(settings.sampler_url, settings.api_token or "", version, project_id)
    except NotifyError as exc:
        log.warning("promotion of %s not notified: %s", version, exc)
        return {"sent": False, "error": str(exc)}
    return {"sent": True, "status": status, "project_id": project_id}
