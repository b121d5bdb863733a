"""The scripted annotator: works through the rounds in CVAT with cvat-sdk, as a person in the UI would.

It takes the first job still "new" in the lowest round the sampler has finished opening, corrects
its people (the generated frames' true points, imported into that job alone, so no other job is
touched), and marks the job completed, which makes CVAT send the trainer its `update:job` webhook.
When no job is left it asks the sampler for the next round.
"""
from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cals.cvat.coco_upload import import_coco
from cals.sampling.rounds import round_tasks


@dataclass
class Completion:
    job_id: int
    task_id: int
    round: int
    frames: int
    at: float
    seconds: float


@dataclass
class Annotator:
    client: Any
    project_id: int
    truth: dict  # the generated frames' COCO document (every point, spine included)
    sampler_url: str
    token: str
    completed: list[Completion] = field(default_factory=list)
    opened: set[int] = field(default_factory=set)  # tasks the sampler finished opening (its /jobs forgets on restart)
    errors: list[str] = field(default_factory=list)

    def next_job(self):
        """(round, job) of the first job to work on, or None when every opened round is done."""
        self._note_opened()
        for number, task in sorted(round_tasks(self.client, self.project_id).items()):
            if task.id not in self.opened:
                continue
            jobs = sorted(task.get_jobs(), key=lambda j: j.start_frame)
            for job in jobs:
                if job.state == "new" and not any(c.job_id == job.id for c in self.completed):
                    return number, task, job
        return None

    def complete_one(self, timeout: float = 300) -> Completion | None:
        """Correct and complete one job; asks for a round first when none is open. None: nothing to do yet."""
        found = self.next_job()
        if found is None:
            self.request_round()
            deadline = time.monotonic() + timeout
            while found is None and time.monotonic() < deadline:
                time.sleep(3)
                found = self.next_job()
            if found is None:
                return None
        number, task, job = found
        t0 = time.monotonic()
        names = [Path(f.name).name for f in job.get_frames_info()]
        import_coco(job, self._truth_of(names))
        job.update({"state": "completed"})
        done = Completion(job.id, task.id, number, len(names), time.time(), round(time.monotonic() - t0, 1))
        self.completed.append(done)
        return done

    def request_round(self) -> dict:
        """POST /rounds to the sampler: the next round, or the open one back when the model is unchanged."""
        body = json.dumps({"project_id": self.project_id}).encode()
        request = urllib.request.Request(f"{self.sampler_url}/rounds", data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def _note_opened(self) -> None:
        try:
            with urllib.request.urlopen(f"{self.sampler_url}/jobs", timeout=10) as response:
                jobs = json.loads(response.read())
        except OSError:
            return  # the sampler is down (a fault): the rounds known so far
        self.opened |= {j["result"]["task_id"] for j in jobs
                        if j.get("state") == "done" and isinstance(j.get("result"), dict) and "task_id" in j["result"]}

    def _truth_of(self, names: list[str]) -> dict:
        images = [im for im in self.truth["images"] if im["file_name"] in names]
        ids = {im["id"] for im in images}
        return {**self.truth, "images": images, "annotations": [a for a in self.truth["annotations"] if a["image_id"] in ids]}
