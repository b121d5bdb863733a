"""One training in a child process: `python -m cals train`, under torchrun for several processes.

The trainer trains this way (also with one process) so that a crash in training (the kernel's OOM
killer, a segfault in a native library, a CUDA abort) fails only its run: the web process keeps
serving, the registry's current model stays, the queue moves on. `cals simulate` trains in-process
(`train_in_process`); `fine_tune_round` takes either as its `train_fn`.

The child inherits the environment (the CALS_* settings); everything about the run is a flag. Its
output (stderr merged into stdout, as torchrun's ranks write both) goes to `train.log` in the work
dir; the `{"progress": ...}` lines feed the caller's callback and the `{"version": ...}` line names
the version it registered. A child never outlives the process that started it: it runs in its own
process group, which `terminate` stops, and on Linux the kernel sends it SIGTERM when its parent
dies (even by SIGKILL), so a restarted trainer never meets a training that writes on.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from cals.errors import CalsError
from cals.registry import Registry, Version

LOG_NAME = "train.log"
TAIL_LINES = 20
# torchrun gives its ranks 30 s to end after a SIGTERM before it kills them; then it exits itself
STOP_GRACE_SECONDS = 45.0
Progress = Callable[[dict[str, Any]], None]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolData:
    """A pool set trained on beside the human labels (`cals.training.pool_set`), and the human
    people's share of the samples (`cals.model.config.mix_pool`)."""

    root: Path
    human_share: float


class TrainFn(Protocol):
    """How `fine_tune_round` trains a candidate: registers one version (not promoted), returns it."""

    def __call__(self, data_root: str | os.PathLike, registry: Registry, *, config: str | None, iters: int | None,
                 batch_size: int | None, init: str | None, work_dir: str | os.PathLike | None,
                 on_progress: Progress, pool: PoolData | None = None,
                 int8_test: str | os.PathLike | None = None) -> Version: ...


class TrainingStopped(CalsError):
    """The training process was terminated on purpose (the trainer is stopping), not by a fault."""


def train_in_process(data_root: str | os.PathLike, registry: Registry, *, config: str | None, iters: int | None,
                     batch_size: int | None, init: str | None, work_dir: str | os.PathLike | None,
                     on_progress: Progress, pool: PoolData | None = None,
                     int8_test: str | os.PathLike | None = None) -> Version:
    """`cals.model.train.train` in this process (`cals simulate`, tests)."""
    from cals.model.train import train

    return train(data_root, registry, config=config, iters=iters, batch_size=batch_size, init=init,
                 progress=False, work_dir=work_dir, on_progress=on_progress,
                 pool_root=pool.root if pool else None, human_share=pool.human_share if pool else 0.5,
                 int8_test_root=int8_test)


class TrainProcess:
    """Trains in a child process (`cals train`, or torchrun with `processes` > 1), one at a time.

    `terminate()` (from another thread) stops the running child and every later call: the call
    then raises `TrainingStopped`. Any other non-zero exit raises CalsError with the exit code or
    signal and the child's one-line error (`cals: error: ...`), or, when it wrote none, its last lines.
    """

    def __init__(self, processes: int = 1, *, stop_grace: float = STOP_GRACE_SECONDS) -> None:
        if processes < 1:
            raise ValueError(f"processes must be 1 or more, got {processes}")
        self.processes = processes
        self.stop_grace = stop_grace
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._stopped = False

    def command(self, data_root: str | os.PathLike, registry: Registry, *, config: str | None, iters: int | None,
                batch_size: int | None, init: str | None, work_dir: str | os.PathLike,
                pool: PoolData | None = None, int8_test: str | os.PathLike | None = None) -> list[str]:
        """The child's argv (without the orphan guard)."""
        launcher = [sys.executable, "-u"]  # unbuffered: progress and errors reach the log as they happen
        if self.processes > 1:
            launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(self.processes)]
        args = ["-m", "cals", "train", "--data", str(data_root), "--registry", str(registry.root),
                "--work-dir", str(work_dir), "--progress-jsonl"]
        for flag, value in (("--config", config), ("--init", init), ("--iters", iters),
                            ("--batch-size", batch_size), ("--int8-test", int8_test)):
            if value is not None:
                args += [flag, str(value)]
        if pool is not None:
            args += ["--pool-data", str(pool.root), "--human-share", str(pool.human_share)]
        return launcher + args

    def __call__(self, data_root: str | os.PathLike, registry: Registry, *, config: str | None = None,
                 iters: int | None = None, batch_size: int | None = None, init: str | None = None,
                 work_dir: str | os.PathLike | None = None, on_progress: Progress | None = None,
                 pool: PoolData | None = None, int8_test: str | os.PathLike | None = None) -> Version:
        cmd = functools.partial(self.command, data_root, registry, config=config, iters=iters,
                                batch_size=batch_size, init=init, pool=pool, int8_test=int8_test)
        if work_dir is None:
            with tempfile.TemporaryDirectory(prefix="cals-train-") as tmp:
                return self._train(cmd, registry, Path(tmp), on_progress)
        return self._train(cmd, registry, Path(work_dir), on_progress)

    @property
    def pid(self) -> int | None:
        """The running child's process id (torchrun's, with several processes), or None."""
        with self._lock:
            return None if self._proc is None else self._proc.pid

    def terminate(self) -> bool:
        """Stop the running child (SIGTERM to its group, SIGKILL after `stop_grace` s) and refuse later
        calls; returns whether a child was running."""
        with self._lock:
            self._stopped = True
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return False
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(self.stop_grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        return True

    def _train(self, command: Callable[..., list[str]], registry: Registry, work: Path,
               on_progress: Progress | None) -> Version:
        work.mkdir(parents=True, exist_ok=True)
        cmd = command(work_dir=work / "train")
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        errors: list[str] = []
        version_id = None
        with open(work / LOG_NAME, "w", encoding="utf-8") as written:
            with self._lock:
                if self._stopped:
                    raise TrainingStopped("training not started: the trainer is stopping")
                self._proc = proc = subprocess.Popen(
                    _guarded(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    start_new_session=True, text=True,
                    encoding="utf-8", errors="replace")
            try:
                for line in proc.stdout:
                    written.write(line)
                    written.flush()
                    message = _message(line)
                    if "progress" in message and on_progress is not None:
                        on_progress(message["progress"])
                    elif isinstance(message.get("version"), str):
                        version_id = message["version"]
                    elif line.strip():
                        tail.append(line.rstrip())
                        if line.startswith("cals: error: "):
                            errors.append(line.removeprefix("cals: error: ").strip())
                code = proc.wait()
            finally:
                if proc.poll() is None:  # the callback raised: do not leave the child training
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()
                with self._lock:
                    self._proc = None
        if code != 0:
            if self._stopped:
                raise TrainingStopped(f"training stopped ({_exit(code)}): the trainer is stopping")
            if errors:  # the child named the problem in one line (a CalsError): that line is the run's error
                log.warning("training process output before its error:\n%s", "\n".join(tail))
                raise CalsError(f"training process failed ({_exit(code)}): {errors[-1]}")
            raise CalsError(f"training process failed ({_exit(code)}); last output:\n" + "\n".join(tail))
        if version_id is None:
            raise CalsError("training process ended without registering a version; last output:\n" + "\n".join(tail))
        return registry.get(version_id)


def _message(line: str) -> dict[str, Any]:
    """A `cals train --progress-jsonl` message, or {} for any other line."""
    if not line.startswith("{"):
        return {}
    try:
        doc = json.loads(line)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session: the group's id is the child's pid
    except ProcessLookupError:
        pass


def _guarded(cmd: list[str]) -> list[str]:
    """On Linux, `cmd` behind `main` below: the kernel will SIGTERM it when this process dies."""
    if not sys.platform.startswith("linux"):
        return cmd
    return [sys.executable, "-m", __name__, str(os.getpid()), *cmd]


def main(argv: list[str]) -> None:
    """Orphan guard: `python -m cals.training.train_process PARENT_PID CMD...` asks for SIGTERM on
    the parent's death (kept across exec), checks the parent is still there, then becomes CMD."""
    import ctypes

    pr_set_pdeathsig = 1
    parent, cmd = int(argv[0]), argv[1:]
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the request took effect
        sys.exit(128 + signal.SIGTERM)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
