"""Benchmark: what one catch-up costs the trainer and CVAT on a large project, through cvat-sdk
against the CVAT-compatible test server: a project of N one-frame jobs, C of them completed.

    python -m bench.catch_up [--jobs 5000] [--completed 1000] [--repeats 5] [--out catch-up-bench.json]

Times the first catch-up (every completed job new, all queued), then later ones (every update known:
what each interval costs in a steady state), and counts the HTTP requests CVAT answered for each.
The stand-in filters and serializes in Python like CVAT's Django views, but without a database:
read its seconds as the client's and the trainer's share, and the request count as CVAT's load.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from cals.cvat.client import CvatSettings, connect
from cals.cvat.trigger import JobTrigger
from cals.training.catch_up import PAGE_SIZE, catch_up
from cals.training.queue import RunQueue

TASK_JOBS = 250  # jobs per task: one upload each (the stand-in caps a request's size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000, help="jobs in the project (one frame each)")
    parser.add_argument("--completed", type=int, default=1000, help="of them, completed")
    parser.add_argument("--repeats", type=int, default=5, help="steady-state catch-ups timed")
    parser.add_argument("--out", type=Path, default=Path("catch-up-bench.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = bench(Path(tmp), args.jobs, args.completed, args.repeats)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def bench(tmp: Path, jobs: int, completed: int, repeats: int) -> dict:
    from tests.cvat_server import CvatTestServer  # stands in for CVAT; catch-up uses cvat-sdk only

    images = tmp / "images"
    images.mkdir()
    tile = np.full((16, 16, 3), 127, np.uint8)
    paths = [images / f"{i:06d}.jpg" for i in range(jobs)]
    for p in paths:
        cv2.imwrite(str(p), tile)
    trigger = JobTrigger.parse("state:completed")
    with CvatTestServer() as server:
        settings = CvatSettings(server.url, server.user, server.password, poll_seconds=0.05)
        with connect(settings) as client:
            project = client.projects.create({"name": "catch-up bench", "labels": [{"name": "person"}]})
            start = time.perf_counter()
            job_ids = sorted(j.id for i in range(0, jobs, TASK_JOBS) for j in client.tasks.create_from_data(
                {"name": f"jobs {i}", "project_id": project.id, "segment_size": 1}, paths[i:i + TASK_JOBS]
            ).get_jobs())
            setup = time.perf_counter() - start
            for job_id in job_ids[:completed]:
                client.jobs.retrieve(job_id).update({"state": "completed"})
            queue = RunQueue(tmp / "queue.sqlite3")
            requests = _request_counter(server)
            first = _timed(lambda: catch_up(client, project.id, trigger, queue), requests)
            steady = [_timed(lambda: catch_up(client, project.id, trigger, queue), requests) for _ in range(repeats)]
    return {"jobs": len(job_ids), "completed": completed, "page_size": PAGE_SIZE, "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(), "setup_seconds": round(setup, 1),
            "first": first, "steady": {"median_seconds": statistics.median(s["seconds"] for s in steady),
                                       "max_seconds": max(s["seconds"] for s in steady),
                                       "requests": steady[0]["requests"], "queued": sum(s["queued"] for s in steady)}}


def _request_counter(server) -> list[int]:
    """A one-element counter of the requests the stand-in answers from now on."""
    count = [0]
    inner = server.app.wsgi_app

    def counting(environ, start_response):
        count[0] += 1
        return inner(environ, start_response)

    server.app.wsgi_app = counting
    return count


def _timed(fn, requests: list[int]) -> dict:
    before = requests[0]
    start = time.perf_counter()
    report = fn()
    return {"seconds": round(time.perf_counter() - start, 3), "requests": requests[0] - before,
            "listed": report.listed, "queued": len(report.queued)}


if __name__ == "__main__":
    main()
