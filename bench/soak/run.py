"""The soak itself: set up a project in a real CVAT, start the services and the function, then let the
annotator, the load and the faults run for the set time; what happened, for the report."""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.soak.annotator import Annotator
from bench.soak.measure import get_json
from bench.soak.stack import Service, TmpfsRegistry


@dataclass
class Soak:
    """The running soak: its services, the annotator, the CVAT proxy's outage switch, the paths."""

    trainer: Service
    sampler: Service
    annotator: Annotator
    outage: Any  # tests.trainer_helpers.Outage of the proxy the services reach CVAT through
    registry: Path
    data: Path
    tmpfs: TmpfsRegistry | None
    restart_cvat: Callable[[], None] | None  # None: the soak did not start CVAT, so it cannot restart it
    catch_up_seconds: float
    ai_tools_call: Callable[[], int]  # one AI-tools call through CVAT; its HTTP status
    windows: list[dict] = field(default_factory=list)  # fault windows: {name, start, end, cvat_down}

    # ---- the trainer's record -------------------------------------------
    def runs(self) -> list[dict]:
        status, body = get_json(f"{self.trainer.url}/runs?limit=1000")
        return body["runs"] if status == 200 else []

    def learned(self) -> dict[int, list[int]]:
        """job id -> the succeeded runs that trained on it."""
        out: dict[int, list[int]] = {}
        for run in self.runs():
            if run["state"] == "succeeded":
                for job in (run.get("result") or {}).get("jobs", []):
                    out.setdefault(job, []).append(run["id"])
        return out

    def wait_learned(self, job_ids: list[int], timeout: float) -> dict[int, list[int]]:
        deadline = time.monotonic() + timeout
        while True:
            learned = self.learned()
            if all(j in learned for j in job_ids) or time.monotonic() > deadline:
                return learned
            time.sleep(3)

    def runs_for(self, job_id: int) -> list[dict]:
        return [r for r in self.runs() if job_id in r["targets"].get("jobs", [])]

    def wait_phase(self, phases: tuple[str, ...], timeout: float, poll: float = 0.002) -> dict | None:
        """The running run as soon as its phase is one of `phases` (read from the queue's database, so a
        phase of a few milliseconds can be seen); None after `timeout`."""
        db_path = self.data / "queue.sqlite3"
        deadline = time.monotonic() + timeout
        db = None
        while time.monotonic() < deadline:
            try:
                db = db or sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
                row = db.execute("SELECT id, phase FROM runs WHERE state = 'running'").fetchone()
            except sqlite3.Error:
                row, db = None, None
            if row and row[1] in phases:
                return {"id": row[0], "phase": row[1]}
            time.sleep(poll)
        return None

    def idle(self, timeout: float) -> bool:
        """True once the trainer has nothing queued or running (within `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = get_json(f"{self.trainer.url}/health")
            if status == 200 and not body.get("running") and not body.get("queued_runs") and not body.get("pending_jobs"):
                return True
            time.sleep(3)
        return False

    def current_model(self) -> str | None:
        status, body = get_json(f"{self.trainer.url}/models")
        return body.get("current") if status == 200 else None

    # ---- bookkeeping -----------------------------------------------------
    def window(self, name: str, *, cvat_down: bool = False) -> dict:
        entry = {"name": name, "start": time.time(), "end": None, "cvat_down": cvat_down}
        self.windows.append(entry)
        return entry

    def labelled_state(self) -> dict[str, Any]:
        """The labelled set as files: per split, the frames and whether every image it names exists."""
        out = {}
        for split in ("train", "val"):
            path = self.data / "labelled" / split / "annotations.json"
            if not path.is_file():
                out[split] = {"frames": 0, "complete": True, "keys": []}
                continue
            doc = json.loads(path.read_text())
            images = path.parent / "images"
            out[split] = {"frames": len(doc["images"]),
                          "complete": all((images / im["file_name"]).is_file() for im in doc["images"]),
                          "keys": sorted(im.get("cvat", {}).get("key", "") for im in doc["images"])}
        return out
