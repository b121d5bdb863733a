"""The faults the soak injects, each followed by the checks of what must hold afterwards.

A fault returns {"fault", "how", "at", "seconds", "holds": [{"check", "ok", "detail"}]}; the report
prints every check. Each waits for its moment (a phase of a real run, a round being written) by
watching the services' own files and records, never by a hook in the product.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

from bench.soak.measure import get_json
from bench.soak.run import Soak

PHASES = ("exporting", "merging", "pool set", "training", "evaluating", "promoting")  # cals/training, in order


def _check(holds: list, name: str, ok: bool, detail: Any = "") -> bool:
    holds.append({"check": name, "ok": bool(ok), "detail": detail if isinstance(detail, str) else repr(detail)})
    return bool(ok)


def _complete(soak: Soak) -> int:
    done = soak.annotator.complete_one()
    if done is None:
        raise RuntimeError("the annotator found no job to complete (no round opened within 300 s)")
    return done.job_id


def _learned_later(soak: Soak, holds: list, job_id: int, timeout: float, name: str) -> None:
    learned = soak.wait_learned([job_id], timeout)
    _check(holds, name, job_id in learned, f"job {job_id}: succeeded runs {learned.get(job_id)}")


def _model_intact(soak: Soak, holds: list, before: str | None) -> None:
    from cals.registry import Registry

    current = Registry(soak.registry).current()
    _check(holds, "the current model is the one before the fault, and loads",
           current is not None and current.id == before and all(p.is_file() for p in current.path.iterdir()),
           f"before {before}, after {current.id if current else None}")


def _labelled_intact(soak: Soak, holds: list, before: dict, job_frames: int) -> None:
    after = soak.labelled_state()
    complete = all(s["complete"] for s in after.values())
    grown = sum(s["frames"] for s in after.values()) - sum(s["frames"] for s in before.values())
    _check(holds, "the labelled set is whole: every frame it names is on disk, and it holds the job "
           "entirely or not at all", complete and grown in (0, job_frames),
           f"frames {sum(s['frames'] for s in before.values())} -> {sum(s['frames'] for s in after.values())} "
           f"(job of {job_frames}), images complete: {complete}")


def trainer_killed(soak: Soak, phase: str, label: str, tries: int = 3) -> dict[str, Any]:
    """kill -9 of the trainer's whole process tree when a run is in `phase`; then it restarts. A run seen
    first in a later phase (a merge takes milliseconds) is let through, and the next job tried."""
    holds: list = []
    window = soak.window(label)
    watched = PHASES[PHASES.index(phase):]
    for attempt in range(1, tries + 1):
        soak.idle(900)
        model, labelled = soak.current_model(), soak.labelled_state()
        job = _complete(soak)
        frames = soak.annotator.completed[-1].frames
        hit = soak.wait_phase(watched, timeout=600)
        if hit and hit["phase"] == phase:
            break
    else:
        window["end"] = time.time()
        return {"fault": label, "how": f"phase {phase!r} never seen in {tries} runs (last seen: {hit})",
                "at": window["start"], "seconds": round(window["end"] - window["start"]),
                "holds": [{"check": "the fault happened", "ok": False, "detail": ""}]}
    soak.trainer.kill()
    how = f"kill -9 at phase {phase!r} of run {hit['id']} (try {attempt})"
    _model_intact(soak, holds, model)
    _labelled_intact(soak, holds, labelled, frames)
    soak.trainer.start()
    runs = soak.runs()
    killed = next((r for r in runs if r["id"] == hit["id"]), {})
    retry = [r for r in runs if r["trigger"] == f"retry of interrupted run {hit['id']}"]
    _check(holds, "the killed run is recorded as interrupted and its work queued again",
           killed.get("state") == "interrupted" and len(retry) == 1,
           f"run {hit['id']}: {killed.get('state')} ({killed.get('error')}); retries {[r['id'] for r in retry]}")
    _learned_later(soak, holds, job, 900, "the job is learned from by the run that follows")
    window["end"] = time.time()
    return {"fault": label, "how": how, "at": window["start"], "seconds": round(window["end"] - window["start"]),
            "holds": holds}


def trainer_down_three_jobs(soak: Soak) -> dict[str, Any]:
    """The trainer stopped while an annotator completes 3 jobs (their webhooks fail), then started."""
    holds: list = []
    window = soak.window("trainer down while 3 jobs are completed")
    soak.idle(900)
    soak.trainer.stop()
    jobs = [_complete(soak) for _ in range(3)]
    started = time.time()
    soak.trainer.start()
    deadline = time.monotonic() + soak.catch_up_seconds + 60
    queued: set[int] = set()
    while time.monotonic() < deadline and not set(jobs) <= queued:
        status, body = get_json(f"{soak.trainer.url}/runs?limit=1000")
        if status == 200:  # pending: waiting for the next run (the trainer was down, so not from a webhook)
            queued = {j for r in body["runs"] if "catch-up" in r["trigger"] for j in r["targets"].get("jobs", [])}
            queued |= set(body["pending_jobs"])
        time.sleep(2)
    _check(holds, f"catch-up queues all 3 within one interval ({soak.catch_up_seconds:.0f} s) of the start",
           set(jobs) <= queued, f"jobs {jobs}; in catch-up runs {sorted(queued & set(jobs))} "
           f"after {time.time() - started:.0f} s")
    learned = soak.wait_learned(jobs, 1200)
    _check(holds, "all 3 are learned from", all(j in learned for j in jobs), {j: learned.get(j) for j in jobs})
    window["end"] = time.time()
    return {"fault": window["name"], "how": "SIGTERM to the trainer (a redeploy), 3 jobs completed, start",
            "at": window["start"], "seconds": round(window["end"] - window["start"]), "holds": holds}


def cvat_restart_during_export(soak: Soak) -> dict[str, Any]:
    """CVAT's server stopped and started (all its processes) while a run exports a job."""
    holds: list = []
    window = soak.window("CVAT restarted during an export", cvat_down=True)
    if soak.restart_cvat is None:
        window["end"] = time.time()
        return {"fault": window["name"], "how": "skipped: CVAT was not started by the soak (CVAT_URL given)",
                "at": window["start"], "seconds": 0, "holds": []}
    soak.idle(900)
    labelled = soak.labelled_state()
    job = _complete(soak)
    hit = soak.wait_phase(("exporting",), timeout=600)
    soak.restart_cvat()
    window["end"] = time.time()
    runs = soak.runs()
    run = next((r for r in runs if hit and r["id"] == hit["id"]), {})
    deadline = time.monotonic() + 600
    while run.get("state") in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(3)
        run = next((r for r in soak.runs() if r["id"] == run["id"]), {})
    ok = run.get("state") == "succeeded" or (run.get("state") == "failed" and "CVAT" in (run.get("error") or ""))
    _check(holds, "the run fails with a reason naming CVAT, or succeeds on a retry", ok,
           f"run {run.get('id')}: {run.get('state')}: {(run.get('error') or '')[:300]}")
    if run.get("state") == "failed":
        _labelled_intact(soak, holds, labelled, 0)
    _learned_later(soak, holds, job, 900, "a later run learns the job")
    return {"fault": window["name"], "how": f"stop.sh + start.sh at phase 'exporting' of run {hit and hit['id']}",
            "at": window["start"], "seconds": round(time.time() - window["start"]), "holds": holds}


def sampler_killed_writing_round(soak: Soak) -> dict[str, Any]:
    """kill -9 of the sampler once its round marker is written (task created, frames or annotations
    on their way), then a restart and the next round."""
    holds: list = []
    window = soak.window("sampler killed while writing a round")
    folder = soak.data / "sampler" / "rounds" / f"project-{soak.annotator.project_id}"
    hit = None
    for _ in range(3):  # a round is written only for a model the last round was not opened with
        model = soak.current_model()
        _complete(soak)
        deadline = time.monotonic() + 900
        while soak.current_model() == model and time.monotonic() < deadline:
            time.sleep(3)
        request = threading.Thread(target=_quietly(soak.annotator.request_round), daemon=True)
        request.start()
        t_end = time.monotonic() + 300
        while time.monotonic() < t_end and hit is None:  # once the task exists (its id in the marker)
            hit = next((m for m in folder.glob("round-*/opening.json") if '"task_id"' in _read(m)), None)
            time.sleep(0.01)
        if hit is not None:
            break
    soak.sampler.kill()
    soak.sampler.start()
    if hit is None:
        window["end"] = time.time()
        return {"fault": window["name"], "how": "no round was written in 3 tries", "at": window["start"],
                "seconds": round(window["end"] - window["start"]), "holds": [{"check": "the fault happened",
                                                                             "ok": False, "detail": ""}]}
    orphan = json.loads(_read(hit) or "{}")
    answer = soak.annotator.request_round()
    job = _wait_sampler_job(soak, answer["job"]["id"], 900)
    result = (job or {}).get("result") or {}
    _check(holds, "the next round opens", (job or {}).get("state") == "done" and result.get("task_id"),
           f"sampler job: {(job or {}).get('state')}: {(job or {}).get('error') or result.get('number')}")
    from cals.sampling.rounds import round_tasks

    tasks = round_tasks(soak.annotator.client, soak.annotator.project_id)
    orphan_id = orphan.get("task_id")
    _check(holds, "the half-written round's task is gone, or is the complete round",
           orphan_id is None or orphan_id not in {t.id for t in tasks.values()} or orphan_id == result.get("task_id"),
           f"orphan task {orphan_id}; round tasks {sorted((n, t.id) for n, t in tasks.items())}")
    number = result.get("number")
    _check(holds, "no marker is left and the round has its record", not list(folder.glob("round-*/opening.json"))
           and (folder / f"round-{number}" / "round.json").is_file(), f"round {number}")
    window["end"] = time.time()
    return {"fault": window["name"], "how": f"kill -9 once {hit.parent.name}/opening.json was written",
            "at": window["start"], "seconds": round(window["end"] - window["start"]), "holds": holds}


def _read(path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _quietly(call: Callable) -> Callable:
    def run() -> None:
        try:
            call()
        except Exception:
            pass  # the sampler is killed under it
    return run


def _wait_sampler_job(soak: Soak, job_id: str | None, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    while job_id and time.monotonic() < deadline:
        status, job = get_json(f"{soak.sampler.url}/jobs/{job_id}")
        if status == 200 and job.get("state") in ("done", "failed"):
            return job
        time.sleep(2)
    return None


def disk_full(soak: Soak) -> dict[str, Any]:
    """The registry's file system full when a run registers its version; then space comes back."""
    holds: list = []
    window = soak.window("registry disk full")
    if soak.tmpfs is None or not soak.tmpfs.mounted:
        window["end"] = time.time()
        return {"fault": window["name"], "how": "skipped: no tmpfs at the registry (not root?)", "at": window["start"],
                "seconds": 0, "holds": []}
    soak.idle(900)
    model = soak.current_model()
    ballast = soak.tmpfs.fill()
    job = _complete(soak)
    deadline = time.monotonic() + 900
    run = {}
    while time.monotonic() < deadline:
        runs = soak.runs_for(job)
        run = runs[0] if runs else {}
        if run.get("state") in ("failed", "succeeded"):
            break
        time.sleep(3)
    error = run.get("error") or ""
    _check(holds, "the run fails with one line naming the disk", run.get("state") == "failed" and "\n" not in error
           and "disk" in error.lower(), f"run {run.get('id')}: {run.get('state')}: {error[:300]}")
    _model_intact(soak, holds, model)
    _check(holds, "the current model stays served (an AI-tools call answers 200)", soak.ai_tools_call() == 200)
    ballast.unlink()
    _learned_later(soak, holds, job, soak.catch_up_seconds + 900, "once space is back, a later run learns the job")
    window["end"] = time.time()
    return {"fault": window["name"], "how": f"tmpfs of {soak.tmpfs.size_mb} MB at the registry, filled to 512 kB free",
            "at": window["start"], "seconds": round(window["end"] - window["start"]), "holds": holds}


def cvat_unreachable(soak: Soak, seconds: float = 120) -> dict[str, Any]:
    """The services' path to CVAT cut (the proxy drops every connection) for `seconds`."""
    holds: list = []
    window = soak.window("CVAT unreachable for 2 minutes")
    soak.outage.down.set()
    seen: dict[str, list] = {"trainer": [], "sampler": []}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for name, service in (("trainer", soak.trainer), ("sampler", soak.sampler)):
            status, body = get_json(f"{service.url}/health")
            seen[name].append((status, body.get("status") if isinstance(body, dict) else None,
                               (body.get("cvat") or {}).get("reachable") if isinstance(body, dict) else None))
        time.sleep(10)
    soak.outage.down.clear()
    for name, answers in seen.items():
        _check(holds, f"the {name} answers /health 200 throughout", all(a[0] == 200 for a in answers), answers)
        _check(holds, f"the {name} says CVAT is unreachable ('degraded')", any(a[1] == "degraded" and a[2] is False
                                                                           for a in answers), answers[-3:])
    recovered = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(recovered) < 2:
        for name, service in (("trainer", soak.trainer), ("sampler", soak.sampler)):
            status, body = get_json(f"{service.url}/health")
            if status == 200 and body.get("status") == "ok" and name not in recovered:
                recovered[name] = round(time.time() - window["start"] - seconds)
        time.sleep(5)
    _check(holds, "both report 'ok' again by themselves within 2 minutes", len(recovered) == 2,
           f"seconds after CVAT came back: {recovered}")
    window["end"] = time.time()
    return {"fault": window["name"], "how": "the proxy in front of CVAT drops every connection",
            "at": window["start"], "seconds": round(window["end"] - window["start"]), "holds": holds}


FAULTS: dict[str, Callable[[Soak], dict[str, Any]]] = {
    "trainer-down": trainer_down_three_jobs,
    "kill-training": lambda soak: trainer_killed(soak, "training", "trainer killed mid-training"),
    "kill-merge": lambda soak: trainer_killed(soak, "merging", "trainer killed mid-merge"),
    "cvat-restart": cvat_restart_during_export,
    "disk-full": disk_full,
    "sampler-kill": sampler_killed_writing_round,
    "cvat-unreachable": cvat_unreachable,
}
