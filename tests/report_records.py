"""The loop's records of a finished campaign, written as the sampler and the trainer write them
(round records, pre-annotations, labelled set, run queue), for the loop report's state tests and its
rendering benchmark (bench/report_render.py). Final labels are the pre-annotations with a share of
points moved, so every number is defined."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from cals.data.coco import write_coco
from cals.schema import Schema
from cals.training.queue import RunQueue

SIZE = (320, 240)
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def write_campaign(data: Path, schema: Schema, *, rounds: int, jobs: int, frames: int = 5, people: int = 2,
                   project_id: int = 1, seed: int = 0) -> dict[int, list[int]]:
    """Rounds 1..`rounds` of `jobs` jobs of `frames` frames, every job completed and learned by one
    run per round (each promoting the next version); returns task id -> job ids."""
    rng = np.random.default_rng(seed)
    queue = RunQueue(data / "queue.sqlite3")
    labelled = {"images": [], "annotations": [], "categories": [schema.coco_category()]}
    tasks = {}
    for number in range(1, rounds + 1):
        task = 100 + number
        names = [[f"r{number}-j{j}-f{f}.jpg" for f in range(frames)] for j in range(jobs)]
        job_ids = [1000 * number + j for j in range(jobs)]
        tasks[task] = job_ids
        coco = _pre_record(schema, [n for job in names for n in job], people, rng)
        _write(data / "preannotations" / f"task-{task}.json", coco)
        opened = T0 + timedelta(hours=number)
        _write(data / "sampler" / "rounds" / f"project-{project_id}" / f"round-{number}" / "round.json", {
            "number": number, "task_id": task, "version": f"v{number:04d}", "strategy": "random(seed=0)",
            "frames": [n for job in names for n in job], "jobs": names, "ranking": [], "folder": "",
            "opened_at": opened.isoformat(), "check_below": 0.6, "random_frames": [n for job in names for n in job]})
        run = _learn(queue, job_ids, number)
        for job_id, job_names in zip(job_ids, names):
            _add_final(labelled, coco, task, job_id, job_names, run, rng)
    write_coco(labelled, data / "labelled" / "train" / "annotations.json")
    return tasks


def _pre_record(schema: Schema, names: list[str], people: int, rng) -> dict:
    images, anns = [], []
    for i, name in enumerate(names):
        images.append({"id": i + 1, "file_name": name, "frame": i, "width": SIZE[0], "height": SIZE[1]})
        for p in range(people):
            x0, y0 = 20 + 140 * p, 20
            kp = np.column_stack([x0 + rng.uniform(0, 100, schema.num_keypoints),
                                  y0 + rng.uniform(0, 200, schema.num_keypoints), np.full(schema.num_keypoints, 2)])
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "keypoints": kp.reshape(-1).round(2).tolist(),
                         "scores": rng.uniform(0.3, 1.0, schema.num_keypoints).round(4).tolist(),
                         "num_keypoints": schema.num_keypoints, "bbox": [x0, y0, 100, 200], "area": 20000.0})
    return {"images": images, "annotations": anns, "categories": [schema.coco_category()]}


def _learn(queue: RunQueue, job_ids: list[int], number: int) -> int:
    for job in job_ids:
        queue.record_job_event(f"job-{job}-completed", job, 100 + number, 1)
    run = queue.claim_next()
    queue.finish(run.id, result={"jobs": job_ids, "model": {
        "version": f"v{number + 1:04d}", "promoted": True, "reason": "not worse", "candidate": 0.5, "current": 0.4}})
    return run.id


def _add_final(labelled: dict, coco: dict, task: int, job: int, names: list[str], run: int, rng) -> None:
    ids = {im["file_name"]: im["id"] for im in coco["images"]}
    for name in names:
        image_id = len(labelled["images"]) + 1
        labelled["images"].append({"id": image_id, "file_name": f"t{task}-{name}", "width": SIZE[0], "height": SIZE[1],
                                   "cvat": {"key": f"task-{task}/{name}", "task_id": task, "frame": name,
                                            "job_id": job, "project_id": 1},
                                   "provenance": [{"run": run, "job_id": job, "at": T0.isoformat()}]})
        for ann in (a for a in coco["annotations"] if a["image_id"] == ids[name]):
            kp = np.asarray(ann["keypoints"], float).reshape(-1, 3)
            kp[rng.random(len(kp)) < 0.3, :2] += 30.0  # moved points
            labelled["annotations"].append({**{k: v for k, v in ann.items() if k != "scores"},
                                            "id": len(labelled["annotations"]) + 1, "image_id": image_id,
                                            "keypoints": kp.reshape(-1).tolist()})


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
