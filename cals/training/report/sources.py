"""What the loop report reads, all of it written by the loop itself on the shared data volume:

- the sampler's round records (`sampler/rounds/project-<id>/round-<n>/round.json`: frames, jobs,
  the model version, the threshold and the random picks) and pre-annotations (`preannotations/`);
- the trainer's labelled set (the final labels of every learned job, with its CVAT task and job),
  its run queue (runs, their gate decisions, when each completion was heard) and the registry;
- optionally CVAT, for the rounds' job states and deleted tasks (one listing per project).
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cals.cvat.round_upload import as_shown
from cals.registry import Registry
from cals.sampling import preannotations
from cals.training.labelled_set import SPLITS, LabelledSet
from cals.training.queue import SUCCEEDED, Run, RunQueue



@dataclass
class LoopRecords:
    rounds: list[dict]  # round.json documents (+ "project_id"), oldest first
    preannotations: Path  # the sampler's records, read only for numbers not yet computed (cache.py)
    finals: dict[int, dict[int, dict[str, list[dict]]]]  # task id -> job id -> frame name -> final people
    job_stamps: dict[int, dict[int, list]]  # task id -> job id -> what its final labels are made of
    first_run: dict[str, int]  # labelled frame key -> the run that first learned it
    runs: list[Run]  # succeeded runs, oldest first
    versions: dict[str, dict[str, Any]]  # version id -> {"parent", "created_at", "promotion"}
    completions: dict[int, str]  # job id -> when the trainer heard it was completed
    cvat: dict[int, dict[int, bool]] | None = None  # round task id -> job id -> completed; None: not asked
    cvat_note: str | None = None  # why CVAT's states are missing
    unreadable: list[str] = field(default_factory=list)  # records that could not be read, in words

    def record_stamp(self, task: int) -> list | None:
        """Size and mtime of the task's pre-annotation record (written once, never changed)."""
        try:
            st = preannotations.record_path(self.preannotations, task).stat()
        except OSError:
            return None
        return [st.st_size, st.st_mtime_ns]

    def pre(self, task: int) -> tuple[dict[str, list[dict]], dict[str, tuple[int, int]]]:
        """The task's pre-annotated people by frame name as CVAT showed them, and the frames' sizes."""
        record = preannotations.load(self.preannotations, task)
        if record is None:
            return {}, {}
        return as_shown(record), {im["file_name"]: (im["width"], im["height"]) for im in record["images"]}


def gather(data_root: Path, registry: Registry, queue: RunQueue, labelled: LabelledSet) -> LoopRecords:
    """Everything but CVAT's states (`cvat_states` reads them)."""
    unreadable: list[str] = []
    rounds = _round_records(Path(data_root), unreadable)
    finals, job_stamps, first_run = _finals(labelled)
    runs = sorted(queue.list(limit=1_000_000, state=SUCCEEDED), key=lambda run: run.id)
    versions = {v.id: {"parent": v.parent, "created_at": v.created_at, "promotion": v.meta.get("promotion")}
                for v in registry.list()}
    return LoopRecords(rounds, Path(data_root) / "preannotations", finals, job_stamps, first_run, runs, versions,
                       queue.completions(), unreadable=unreadable)


def _round_records(data_root: Path, unreadable: list[str]) -> list[dict]:
    out = []
    for path in sorted((data_root / "sampler" / "rounds").glob("project-*/round-*/round.json")):
        try:
            doc = json.loads(path.read_text())
            project = int(path.parent.parent.name.removeprefix("project-"))
        except (OSError, ValueError) as exc:
            unreadable.append(f"{path}: {exc}")
            continue
        out.append({**doc, "project_id": project})
    return sorted(out, key=lambda r: (r["project_id"], r["number"]))


def _finals(labelled: LabelledSet) -> tuple[dict, dict, dict[str, int]]:
    """The final labels of every learned job, their stamps, and the run that first learned each frame."""
    finals: dict[int, dict[int, dict[str, list[dict]]]] = defaultdict(lambda: defaultdict(dict))
    stamps: dict[int, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    first_run = {}
    for split in SPLITS:
        doc = labelled.load(split)
        people = defaultdict(list)
        for ann in doc["annotations"]:
            people[ann["image_id"]].append(ann)
        for im in doc["images"]:
            origin = im.get("cvat")
            if not origin or origin.get("job_id") is None:
                continue
            name = PurePosixPath(origin["frame"]).name
            finals[origin["task_id"]][origin["job_id"]][name] = people[im["id"]]
            stamps[origin["task_id"]][origin["job_id"]].append([name, im.get("provenance", [])[-1:]])
            runs = [p["run"] for p in im.get("provenance", []) if isinstance(p.get("run"), int)]
            if runs:
                first_run[origin["key"]] = min(runs)
    return finals, stamps, first_run


def cvat_states(records: LoopRecords, client, trigger) -> dict[int, dict[int, bool]]:
    """Round task id -> its jobs -> whether each reached the trainer's trigger; a task CVAT no
    longer has is absent."""
    from cals.sampling.rounds import round_tasks

    states: dict[int, dict[int, bool]] = {}
    for project in sorted({r["project_id"] for r in records.rounds}):
        tasks = {t.id for t in round_tasks(client, project).values()}
        states.update({t: {} for t in tasks})
        for job in client.jobs.list(project_id=project):
            if job.task_id in tasks:
                states[job.task_id][job.id] = trigger.matches(job)
    return states
