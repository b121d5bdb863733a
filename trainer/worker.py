"""The one background worker: claims a run from the queue, executes it, records the outcome.

One thread per process (gunicorn runs one worker process), so one training at a time. At start
it recovers runs a dead process left `running` and removes their leftover files (work folders,
registry staging dirs, half-merged labelled-set images), before it claims any run. A run's
failure is recorded on the run; the registry's current model changes only at the end of a
successful round. Training runs in a child process (`TrainProcess`): a crash there (OOM kill,
segfault) fails the run, not this process. Stopping the worker waits for the current run; a
training still going after the wait, or when the process exits, is terminated and its run
recorded as interrupted and queued again, as after a crash. After a run succeeds, the loop
report's numbers of what it learned are computed (`after_run`), so the next page view is quick.
"""
from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import Any, Callable

from flask import Flask

from cals.errors import CalsError
from cals.training.catch_up import CatchUp
from cals.training.queue import SUCCEEDED, Run, RunQueue
from cals.training.run import RunSettings, clean_leftovers, execute
from cals.training.train_process import TrainingStopped

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, queue: RunQueue, settings: RunSettings, *, poll_seconds: float = 5.0,
                 catch_up: CatchUp | None = None, after_run: Callable[[], None] | None = None) -> None:
        self.queue = queue
        self.settings = settings
        self.poll_seconds = poll_seconds
        self.catch_up = catch_up  # between runs: completed jobs whose webhook never came
        self.after_run = after_run  # after a run succeeded, best effort (the loop report's numbers)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.training = settings.train_process()  # the worker's own, so `stop` can terminate it

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Requeue runs a dead process left running and remove their leftovers, then start."""
        for run in self.queue.recover():
            log.warning("re-queued the work of an interrupted run as run %d", run.id)
        try:
            clean_leftovers(self.settings)
        except Exception:  # noqa: BLE001 - leftovers cost disk space, not correctness: still serve
            log.exception("could not remove the leftovers of interrupted runs")
        self._thread = threading.Thread(target=self._loop, name="cals-trainer-worker", daemon=True)
        self._thread.start()
        atexit.register(_terminate_at_exit, weakref.ref(self))  # the daemon thread dies with the process

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the current run; a training still going after `timeout` s is terminated (its run
        is then queued again). With no timeout, wait for the run however long it takes."""
        self._stop.set()
        self._wake.set()
        if self._thread is None:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.training.terminate()
            self._thread.join(timeout)

    def run_once(self) -> Run | None:
        """Claim and execute the next run, if any; returns the finished run."""
        run = self.queue.claim_next()
        if run is None:
            return None
        log.info("run %d started: %s", run.id, run.targets)

        progress: dict[str, Any] = {}

        def report(phase: str, info: dict[str, Any]) -> None:
            progress[phase] = {**progress.get(phase, {}), **info}  # each phase keeps its last numbers
            self.queue.update_progress(run.id, phase, progress)

        try:
            result = execute(run, self.settings, report, train=self.training)
        except TrainingStopped as exc:  # the trainer is stopping: like a crash, the run is done again
            log.warning("run %d stopped: %s", run.id, exc)
            for retry in self.queue.recover():
                log.warning("re-queued the work of the stopped run as run %d", retry.id)
            return self.queue.get(run.id)
        except CalsError as exc:
            log.error("run %d failed: %s", run.id, exc)
            return self.queue.finish(run.id, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a training crash must not kill the worker
            log.exception("run %d crashed", run.id)
            return self.queue.finish(run.id, error=f"{type(exc).__name__}: {exc}")
        log.info("run %d succeeded: %s", run.id, result.get("model"))
        return self.queue.finish(run.id, result=result)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.catch_up is not None and self.catch_up.due():
                    self.catch_up.run()
                run = self.run_once()
                if run is not None:
                    self._after(run)
                    continue
            except Exception:  # noqa: BLE001 - e.g. the queue's disk is full: retry later
                log.exception("worker could not reach the run queue")
            wait = self.poll_seconds if self.catch_up is None else min(self.poll_seconds,
                                                                       self.catch_up.seconds_to_next())
            self._wake.wait(wait)
            self._wake.clear()


    def _after(self, run: Run) -> None:
        if self.after_run is None or run.state != SUCCEEDED:
            return
        try:
            self.after_run()
        except Exception:  # noqa: BLE001 - a report is never worth a run
            log.exception("after run %d: could not update the loop report's numbers", run.id)


def _terminate_at_exit(ref: "weakref.ref[Worker]") -> None:
    """A training child must not outlive the trainer (on Linux the kernel also sees to it)."""
    worker = ref()
    if worker is not None:
        worker._stop.set()
        if worker.training.terminate():
            log.warning("terminated the training process at exit; its run is retried at the next start")


def init_app(app: Flask, queue: RunQueue, settings: RunSettings, *, start: bool, poll_seconds: float,
             catch_up: CatchUp | None = None, after_run: Callable[[], None] | None = None) -> Worker:
    worker = Worker(queue, settings, poll_seconds=poll_seconds, catch_up=catch_up, after_run=after_run)
    if start:
        worker.start()
    return worker
