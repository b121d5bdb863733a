"""The loop report against CVAT: the sampler opens two rounds, the annotator edits a job of each by
known amounts (k spine points moved, one person added, every flag left unticked by the import),
completes it, the trainer learns it; GET /report.json and `cals report` must give the numbers this
test computes on its own from the same CVAT annotations (its own export, matching, OKS and COCOeval).
"""
from __future__ import annotations

import contextlib
import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from xtcocotools.coco import COCO
from xtcocotools.cocoeval import COCOeval

from cals.cli import main
from cals.cvat.coco_upload import import_coco
from tests.test_walkthrough import deployed, running_services, wait_for_round
from tests.trainer_helpers import HttpClient

ROUND, JOB = 10, 5
MOVED = {1: 3, 2: 1}  # round -> spine points the annotator moves in its first job
TOLERANCE = 0.5


def annotate(job, record: dict, k: int, schema) -> int:
    """The pre-annotations of `job`'s frames as CVAT showed them, k spine points of the first person
    moved by half the image width, and one person added (a copy of a person from another frame);
    returns the added person's spine points."""
    names = [Path(f.name).name for f in job.get_frames_info()]
    images = [im for im in record["images"] if im["file_name"] in names]
    ids = {im["id"]: im for im in images}
    anns = []
    for ann in record["annotations"]:
        if ann["image_id"] in ids:
            im = ids[ann["image_id"]]
            kp = np.asarray(ann["keypoints"], float).reshape(-1, 3)
            kp[~_on_image(kp, im), 2] = 0
            anns.append({**ann, "keypoints": kp})
    first = anns[0]
    w = ids[first["image_id"]]["width"]
    spine = [i for i in schema.groups["spine"] if first["keypoints"][i, 2] > 0][:k]
    assert len(spine) == k, "the first person shows too few spine points to move"
    for i in spine:
        x = first["keypoints"][i, 0]
        first["keypoints"][i, 0] = x - w / 2 if x > w / 2 else x + w / 2
    donor = next(a for a in record["annotations"] if a["image_id"] not in ids)
    added = np.asarray(donor["keypoints"], float).reshape(-1, 3)
    added[~_on_image(added, ids[first["image_id"]]), 2] = 0
    anns.append({**donor, "image_id": first["image_id"], "keypoints": added})
    out = [{**a, "id": n + 1, "keypoints": a["keypoints"].reshape(-1).tolist()} for n, a in enumerate(anns)]
    import_coco(job, {"images": images, "annotations": out, "categories": record["categories"]})
    return int((added[schema.groups["spine"], 2] > 0).sum())


def _on_image(kp: np.ndarray, im: dict) -> np.ndarray:
    return (kp[:, 0] >= 0) & (kp[:, 0] <= im["width"]) & (kp[:, 1] >= 0) & (kp[:, 1] <= im["height"])


def exported(job, schema, tmp: Path) -> dict[str, list[dict]]:
    """The job's final people by frame name, from this test's own COCO export, in schema order."""
    archive = tmp / f"job-{job.id}.zip"
    job.export_dataset("COCO Keypoints 1.0", archive, include_images=False)
    with zipfile.ZipFile(archive) as z:
        doc = json.loads(z.read(next(n for n in z.namelist() if n.endswith(".json"))))
    names = {im["id"]: Path(im["file_name"]).name for im in doc["images"]}
    cols = {c["id"]: [c["keypoints"].index(n) for n in schema.names] for c in doc["categories"] if c.get("keypoints")}
    out: dict[str, list[dict]] = {n: [] for n in names.values()}
    for ann in doc["annotations"]:
        kp = np.asarray(ann["keypoints"], float).reshape(-1, 3)[cols[ann["category_id"]]]
        out[names[ann["image_id"]]].append({**ann, "keypoints": kp})
    return out


def expected(pre: dict, final: dict[str, list[dict]], schema, threshold: float) -> dict:
    """Counts, moved points, displacement, flags and AP per group, computed here from first principles."""
    sig = np.asarray(schema.sigmas)
    images = {im["id"]: im for im in pre["images"]}
    guesses: dict[str, list[dict]] = {}
    for ann in pre["annotations"]:
        im = images[ann["image_id"]]
        kp = np.asarray(ann["keypoints"], float).reshape(-1, 3).copy()
        kp[~_on_image(kp, im), 2] = 0
        guesses.setdefault(im["file_name"], []).append({**ann, "keypoints": kp, "scores": np.asarray(ann["scores"])})
    tally = {g: dict(points=0, moved=0, measured=0, dist=0.0, shown=0, flagged=0, mshown=0, caught=0) for g in schema.groups}
    for name, people in final.items():
        for gt, guess in _greedy(people, guesses.get(name, []), sig):
            lab = gt["keypoints"][:, 2] > 0
            put = guess["keypoints"][:, 2] > 0 if guess else np.zeros(len(lab), bool)
            d = np.linalg.norm(guess["keypoints"][:, :2] - gt["keypoints"][:, :2], axis=1) if guess else np.zeros(len(lab))
            term = np.exp(-d ** 2 / (2 * _area(gt) * (2 * sig) ** 2))
            moved = lab & (~put | (term < TOLERANCE))
            flag = put & (guess["scores"] < threshold) if guess else put
            for g, idx in schema.groups.items():
                t = tally[g]
                t["points"] += int(lab[idx].sum())
                t["moved"] += int(moved[idx].sum())
                t["measured"] += int((lab & put)[idx].sum())
                t["dist"] += float(d[idx][(lab & put)[idx]].sum())
                if guess:
                    t["shown"] += int(put[idx].sum())
                    t["flagged"] += int(flag[idx].sum())
                    t["mshown"] += int((moved & put)[idx].sum())
                    t["caught"] += int((moved & flag)[idx].sum())
    ap = {g: _ap(pre, guesses, final, sig, idx) for g, idx in schema.groups.items()}
    return {"tally": tally, "ap": ap, "frames": len(final), "people": sum(len(p) for p in final.values())}


def _greedy(finals: list[dict], guesses: list[dict], sig: np.ndarray):
    def oks(g, f):
        lab = f["keypoints"][:, 2] > 0
        d2 = ((g["keypoints"][:, :2] - f["keypoints"][:, :2]) ** 2).sum(1)
        e = d2 / (2 * sig) ** 2 / (_area(f) + np.spacing(1)) / 2
        return float(np.exp(-e)[lab].mean()) if lab.any() else 0.0
    pairs = sorted(((oks(g, f), i, j) for i, f in enumerate(finals) for j, g in enumerate(guesses)), reverse=True)
    used_f, used_g, out = set(), set(), []
    for s, i, j in pairs:
        if s > 0 and i not in used_f and j not in used_g:
            used_f.add(i), used_g.add(j)
            out.append((finals[i], guesses[j]))
    return out + [(f, None) for i, f in enumerate(finals) if i not in used_f]


def _area(ann: dict) -> float:
    return max(float(ann.get("area") or ann["bbox"][2] * ann["bbox"][3]), 1.0)


def _ap(pre: dict, guesses: dict, final: dict, sig: np.ndarray, idx: list[int]) -> float:
    names = sorted(final)
    gt = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    dt = []
    for image_id, name in enumerate(names, start=1):
        gt["images"].append({"id": image_id, "file_name": name})
        for f in final[name]:
            kp = f["keypoints"][idx]
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": 1,
                                      "iscrowd": 0, "bbox": f["bbox"], "num_keypoints": int((kp[:, 2] > 0).sum()),
                                      "area": f.get("area") or 0.53 * f["bbox"][2] * f["bbox"][3],
                                      "keypoints": kp.reshape(-1).tolist()})
        for g in guesses.get(name, []):
            kp = g["keypoints"][idx]
            score = np.where(kp[:, 2] > 0, g["scores"][idx], 0.0)
            dt.append({"image_id": image_id, "category_id": 1, "score": float(np.mean(g["scores"])),
                       "keypoints": np.column_stack([kp[:, :2], score]).reshape(-1).tolist()})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dt), "keypoints", sigmas=sig[idx], use_area=True)
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return max(0.0, float(ev.stats[0]))


def check_round(got: dict, want: dict, schema, k: int, added_spine: int, threshold: float) -> None:
    assert got["frames"] == want["frames"] == JOB and got["people"] == want["people"]
    for g in schema.groups:
        t, e = want["tally"][g], got["effort"][g]
        assert got["points"][g] == e["points"] == t["points"] > 0
        assert e["moved"] == t["moved"]
        assert e["moved_share"] == pytest.approx(t["moved"] / t["points"], abs=1e-6)
        assert e["mean_displacement_px"] == pytest.approx(t["dist"] / t["measured"], abs=1e-6)
        f = got["flags"][g]
        assert (f["shown"], f["flagged"], f["moved"], f["caught"]) == (t["shown"], t["flagged"], t["mshown"], t["caught"])
        assert f["threshold"] == threshold
        assert f["workload"] == pytest.approx(t["flagged"] / t["shown"], abs=1e-6)
        assert f["recall"] == (pytest.approx(t["caught"] / t["mshown"], abs=1e-6) if t["mshown"] else None)
        assert got["ap"]["all"][g] == pytest.approx(want["ap"][g], abs=1e-6)
        assert got["ap"]["random"][g] == pytest.approx(want["ap"][g], abs=1e-6)  # random order: every frame
    assert want["tally"]["spine"]["moved"] == k + added_spine  # the k moved, and every point of the added person
    done = sum(t["moved"] for t in want["tally"].values())
    scratch = sum(t["points"] for t in want["tally"].values())
    assert got["work"] == {"placed_or_moved": done, "from_scratch": scratch,
                           "saved_share": pytest.approx(1 - done / scratch, abs=1e-6)}


@pytest.mark.slow
def test_report_gives_the_numbers_of_the_edited_jobs(cvat_server, cvat_client, schema, trained, tmp_path, capsys):
    d = deployed(cvat_server, schema, trained, tmp_path, images=30, seed=35, name="report")
    env, project_id, registry, data = d.env, d.project_id, d.registry, tmp_path / "data"
    d.sampler_cfg["SAMPLER_STRATEGY"] = "random"  # the default order: every frame is a random pick
    jobs = {}
    with running_services(d.trainer_cfg, d.sampler_cfg, d.port) as urls:
        trainer_url, sampler_url = urls
        api = HttpClient(trainer_url)
        empty = api.get("/report.json").get_json()
        assert empty["rounds"] == [] and "No round is open yet" in api.get("/report").get_data(as_text=True)
        assert main(["round", "--env-file", str(env), "--sampler-url", sampler_url]) == 0
        for number in (1, 2):
            task = wait_for_round(cvat_client, project_id, number, urls)
            job = min(task.get_jobs(), key=lambda j: j.start_frame)
            record = json.loads((data / "preannotations" / f"task-{task.id}.json").read_text())
            added = annotate(job, record, MOVED[number], schema)
            job.update({"state": "completed"})
            jobs[number] = (task, job, record, added)
            _wait_for_runs(api, number)
        wait_for_round(cvat_client, project_id, 3, urls)  # opened by the second promotion: open, nothing learned
        doc = api.get("/report.json").get_json()
        page = api.get("/report")
        capsys.readouterr()
        assert main(["report", "--env-file", str(env), "--data", str(data), "--registry", str(registry), "--json",
                     "--out", str(tmp_path / "report.html")]) == 0
        cli = json.loads(capsys.readouterr().out)
        assert main(["report", "--env-file", str(env), "--data", str(tmp_path / "not-here"), "--trainer-url",
                     trainer_url, "--json"]) == 0  # compose keeps the data in a volume: the trainer answers
        remote = json.loads(capsys.readouterr().out)

    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "Traceback" not in html and html.count("<svg") == 4 and "Is the loop working for us?" in html
    assert (tmp_path / "report.html").read_text().count("<svg") == 4
    finals = {number: exported(job, schema, tmp_path) for number, (_, job, _, _) in jobs.items()}
    for report in (doc, cli):
        by_number = {r["number"]: r for r in report["rounds"]}
        assert sorted(by_number) == [1, 2, 3] and report["skipped"] == [] and report["cvat_states"]
        for number, (task, job, record, added) in jobs.items():
            got = by_number[number]
            threshold = json.loads((Path(got_folder(data, project_id, number)) / "round.json").read_text())["check_below"]
            assert got["task_id"] == task.id and got["check_below"] == threshold
            assert got["state"] == "open" and (got["jobs_total"], got["jobs_completed"], got["jobs_learned"]) == (2, 1, 1)
            want = expected(record, finals[number], schema, threshold)
            check_round(got, want, schema, MOVED[number], added, threshold)
            (j,) = got["jobs"]
            assert j["job_id"] == job.id and j["effort"] == got["effort"] and j["ap"] == got["ap"]
            assert got["gate"]["promoted"] is True and got["gate"]["version"] is not None
            assert got["times"]["open_to_done_s"] >= 0 and got["times"]["done_to_promoted_s"] >= 0
        assert by_number[1]["labelled_frames_before"] == 0 and by_number[2]["labelled_frames_before"] == JOB
        assert by_number[2]["version"] == by_number[1]["gate"]["version"]  # round 2 came from round 1's model
        assert by_number[3]["frames"] == 0 and by_number[3]["state"] == "open"
    assert cli["rounds"] == doc["rounds"] == remote["rounds"]


def got_folder(data: Path, project_id: int, number: int) -> Path:
    return data / "sampler" / "rounds" / f"project-{project_id}" / f"round-{number}"


def _wait_for_runs(api: HttpClient, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = api.get("/runs").get_json()["runs"]
        if sum(r["state"] == "succeeded" for r in runs) >= count:
            return
        assert not any(r["state"] == "failed" for r in runs), runs
        time.sleep(0.3)
    raise AssertionError(f"{count} succeeded run(s) expected within {timeout} s: {api.get('/runs').get_json()}")


# ---- states, from records written as the loop writes them (tests/report_records.py) ----------
@pytest.fixture
def campaign(tmp_path, schema):
    from cals.registry import Registry
    from cals.training.queue import RunQueue
    from tests.report_records import write_campaign

    tasks = write_campaign(tmp_path / "data", schema, rounds=3, jobs=2)
    return tmp_path / "data", Registry(str(tmp_path / "registry")), RunQueue(tmp_path / "data" / "queue.sqlite3"), tasks


def _report(campaign, schema, states=None, cvat=None):
    from cals.training.report import loop_report
    from cals.training.report.build import build_report
    from cals.training.report.sources import gather
    from cals.training.labelled_set import LabelledSet

    data, registry, queue, _ = campaign
    if states is None:
        return loop_report(data, registry, queue, schema, tolerance=TOLERANCE, cvat=cvat)
    records = gather(data, registry, queue, LabelledSet(data / "labelled", schema))
    records.cvat = states
    return build_report(records, schema, tolerance=TOLERANCE, generated_at="now")


def test_a_deleted_round_is_skipped_and_named_and_open_rounds_say_so(campaign, schema):
    from cals.training.report import render_page

    tasks = campaign[3]
    jobs = {task: dict.fromkeys(ids, True) for task, ids in tasks.items()}
    del jobs[102]  # round 2's task deleted in CVAT
    jobs[103] = {**jobs[103], 9999: False}  # round 3 has a third job nobody completed
    report = _report(campaign, schema, states=jobs)
    assert [r["number"] for r in report["rounds"]] == [1, 3]
    assert report["skipped"] == [{"number": 2, "task_id": 102, "project_id": 1, "reason": "its task was deleted in CVAT"}]
    first, third = report["rounds"]
    assert (first["state"], first["jobs_total"], first["jobs_completed"], first["jobs_learned"]) == ("complete", 2, 2, 2)
    assert (third["state"], third["jobs_total"], third["jobs_completed"], third["jobs_learned"]) == ("open", 3, 2, 2)
    page = render_page(report)
    assert "Round 2 (task 102) is skipped: its task was deleted in CVAT." in page
    assert ">open<" in page and "2/3 jobs learned" in page and "Traceback" not in page


def test_a_round_completed_in_cvat_but_not_learned_waits_for_the_trainer(campaign, schema):
    tasks = campaign[3]
    jobs = {task: dict.fromkeys(ids, True) for task, ids in tasks.items()}
    jobs[103][7777] = True  # completed in CVAT; the trainer has not learned it yet
    report = _report(campaign, schema, states=jobs)
    assert report["rounds"][2]["state"] == "waiting for the trainer"


def test_without_cvat_the_page_says_so_and_shows_the_records(campaign, schema):
    from cals.training.report import render_page

    def unreachable():
        raise ConnectionError("connection refused")

    report = _report(campaign, schema, cvat=unreachable)
    assert report["cvat_states"] is False and "connection refused" in report["cvat_note"]
    assert [r["state"] for r in report["rounds"]] == ["complete"] * 3  # every recorded job learned
    page = render_page(report)
    assert "CVAT did not answer" in page and page.count("<svg") == 4


def test_before_any_round_the_page_says_what_will_appear(tmp_path, schema):
    from cals.registry import Registry
    from cals.training.queue import RunQueue
    from cals.training.report import loop_report, render_page

    report = loop_report(tmp_path, Registry(str(tmp_path / "registry")), RunQueue(tmp_path / "q.sqlite3"), schema,
                         tolerance=TOLERANCE)
    assert report["rounds"] == [] and report["skipped"] == []
    page = render_page(report)
    assert "No completed job yet" in page and "No round is open yet" in page and "<svg" not in page


def test_an_unreadable_round_record_is_named_and_the_others_shown(campaign, schema):
    data = campaign[0]
    (data / "sampler" / "rounds" / "project-1" / "round-2" / "round.json").write_text("{not json")
    report = _report(campaign, schema)
    assert [r["number"] for r in report["rounds"]] == [1, 3]
    assert len(report["unreadable"]) == 1 and "round-2" in report["unreadable"][0]


def test_readings_name_the_first_and_last_rounds(campaign, schema):
    from cals.training.report.readings import readings

    report = _report(campaign, schema)
    said = readings(report)
    spine = [r["ap"]["random"]["spine"] for r in report["rounds"]]
    assert f"from {spine[0]:.2f} (round 1) to {spine[-1]:.2f} (round 3) over 3 rounds" in said["accuracy"]
    moved = [f"{100 * r['effort']['spine']['moved_share']:.0f} %" for r in report["rounds"]]
    assert said["moved"].startswith(f"Annotators moved {moved[0]}, then {moved[1]}, then {moved[2]} of spine points")
    done = sum(r["work"]["placed_or_moved"] for r in report["rounds"])
    assert f"People placed or moved {done} of the" in said["work"]


def test_report_without_records_or_trainer_says_what_to_do(tmp_path, capsys):
    assert main(["report", "--data", str(tmp_path / "absent"), "--trainer-url", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cals: error: no loop records here") and "--data or --trainer-url" in err
    assert len(err.splitlines()) == 1
