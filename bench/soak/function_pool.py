"""The Nuclio function as Nuclio runs it: N worker processes behind one HTTP trigger.

Nuclio's python runtime starts one wrapper process per worker; each runs `init_context` once and
then `handler` for every event the trigger hands it, and the trigger gives an event to whichever
worker is free. Here each worker is a spawned process that loads `serverless/spine-pose/nuclio/
main.py` with the function.yaml's environment, and `PooledFunction` (served by the tests'
Nuclio-dashboard stand-in, which CVAT's lambda manager calls) hands each invocation to a free one.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import sys
from pathlib import Path

import yaml

from tests.nuclio_dashboard import Invocation, NuclioFunction, _as_response, http_event

ROOT = Path(__file__).resolve().parents[2]
FUNCTION_DIR = ROOT / "serverless" / "spine-pose" / "nuclio"


def _worker(env: dict[str, str], conn) -> None:
    """One Nuclio worker: load the handler, then answer (body, headers, method, path) until None."""
    os.environ.clear()
    os.environ.update(env)  # before torch is imported: the function's container has no OMP_NUM_THREADS
    import importlib.util

    import nuclio_sdk
    import nuclio_sdk.test

    spec = importlib.util.spec_from_file_location("cals_spine_pose_main", FUNCTION_DIR / "main.py")
    main = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = main
    spec.loader.exec_module(main)
    platform = nuclio_sdk.test.Platform()
    platform._logger.set_handler("default", open(os.devnull, "w"), nuclio_sdk.logger.HumanReadableFormatter())
    conn.send(("ready", os.getpid()))
    while (task := conn.recv()) is not None:
        event = http_event(*task)  # (body, headers, method, path)
        try:
            answer = _as_response(platform.call_handler(main.handler, event))
        except Exception as exc:  # Nuclio answers 500 when the handler raises
            answer = (500, f"handler raised {type(exc).__name__}: {exc}".encode(), "text/plain", {})
        conn.send(answer)


def function_env(base: dict[str, str], overrides: dict[str, str], workers: int) -> dict[str, str]:
    """function.yaml's env with `overrides` (paths on this host), as the worker's whole environment."""
    config = yaml.safe_load((FUNCTION_DIR / "function.yaml").read_text())
    env = {k: v for k, v in base.items() if not k.startswith("CALS_") and k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update({item["name"]: str(item["value"]) for item in config["spec"]["env"]})
    env.pop("CALS_INIT_CHECKPOINT", None)  # the registry has its model already
    env.update({"PYTHONPATH": str(ROOT), "CALS_FUNCTION_WORKERS": str(workers), **overrides})
    return env


class PooledFunction(NuclioFunction):
    """The function's yaml, its invocations answered by `workers` processes (one event each at a time)."""

    @classmethod
    def start(cls, env: dict[str, str], workers: int) -> "PooledFunction":
        config = yaml.safe_load((FUNCTION_DIR / "function.yaml").read_text())
        function = cls(config=config, handler=None)
        ctx = multiprocessing.get_context("spawn")
        function.free = queue.Queue()
        function.processes = []
        for _ in range(workers):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_worker, args=(env, child), daemon=True)
            process.start()
            function.processes.append(process)
            if not parent.poll(300):
                raise RuntimeError("a function worker did not start within 300 s")
            parent.recv()
            function.free.put(parent)
        return function

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def invoke(self, body: bytes, headers: dict[str, str], *, method: str = "POST", path: str = "/") -> Invocation:
        try:  # Nuclio's workerAvailabilityTimeoutMilliseconds (10 s), then 503
            conn = self.free.get(timeout=10)
        except queue.Empty:
            return Invocation(body, 503, b"no worker available", "text/plain")
        try:
            conn.send((body, headers, method, path))
            answer = conn.recv()
        finally:
            self.free.put(conn)
        return Invocation(None, *answer)  # not kept: a soak makes thousands

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.join(5)
